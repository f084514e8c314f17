"""Who is calling: a :class:`Caller` (tenant, object id, roles, kind) and the app roles Weft checks.

A caller is built once per request by :class:`~shared.identity.authenticate.Authenticator` from a validated Entra ID
token or from App Service Authentication's principal header; both paths go through :func:`caller_from_claims`, so a
token and an Easy Auth principal with the same claims give the same caller.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from shared.errors import Forbidden, Unauthenticated

__all__ = [
    "LOCAL_CALLER",
    "Caller",
    "CallerKind",
    "Role",
    "caller_from_claims",
    "service_caller",
]

CallerKind = Literal["user", "app", "local", "service"]

# Entra object and tenant ids are GUIDs and ``sub`` is base64url; anything else is refused so that
# ``Caller.key`` never carries a character with a meaning to a store ("/", "#", "?", "\\", control characters).
_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class Role(StrEnum):
    """App roles declared in the app registration; a token carries the ones granted to its caller in ``roles``."""

    RUNS_SUBMIT = "Runs.Submit"
    """Start runs (plans, code, tasks) and read, cancel its own runs."""
    RUNS_READ_ALL = "Runs.ReadAll"
    """See every caller's runs, not only one's own."""
    RUNS_APPROVE = "Runs.Approve"
    """Approve or deny another caller's side-effecting tool calls."""
    TOOLS_ADMIN = "Tools.Admin"
    """Register and remove tool sources, reload the catalog."""


@dataclass(frozen=True)
class Caller:
    """An authenticated caller. ``tenant_id`` + ``object_id`` identify it; ``name`` is for display only."""

    tenant_id: str
    object_id: str
    name: str
    roles: frozenset[str]
    """The app roles granted (values of :class:`Role`, plus any other role the registration declares)."""
    kind: CallerKind
    """``user`` (delegated token or signed-in user), ``app`` (client credentials, managed identity), ``local``
    (identity off) or ``service`` (work started by the platform, e.g. a queue message)."""

    @property
    def key(self) -> str:
        """The stable owner key ``<tenant_id>/<object_id>`` (both parts are ``[A-Za-z0-9._-]``, so it is safe in a
        blob name or a SQL parameter; Table Storage keys may not contain ``/``: replace it there)."""
        return f"{self.tenant_id}/{self.object_id}"

    def has_role(self, role: Role) -> bool:
        """Whether the caller was granted ``role``."""
        return str(role) in self.roles

    def require(self, role: Role) -> None:
        """Raise :class:`~shared.errors.Forbidden` naming ``role`` unless the caller has it."""
        if not self.has_role(role):
            raise Forbidden(f"this action needs the app role {role.value}, which the caller does not have")


LOCAL_CALLER = Caller(
    tenant_id="local", object_id="local", name="local", roles=frozenset(r.value for r in Role), kind="local"
)
"""The single keyless caller used when identity is off (``WEFT_AUTH_MODE=none``): it holds every role."""


def service_caller(name: str, roles: Iterable[str]) -> Caller:
    """The caller that platform-started work (a queue message) runs as: tenant ``service``, object id ``name``."""
    if not _ID.fullmatch(name):
        raise ValueError(f"a service caller name must match {_ID.pattern}, got {name!r}")
    return Caller(tenant_id="service", object_id=name, name=name, roles=frozenset(roles), kind="service")


def _text(claims: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _identifier(claims: Mapping[str, Any], *names: str, what: str) -> str:
    value = _text(claims, *names)
    if value is None:
        raise Unauthenticated(f"the credential has no {what} claim ({' or '.join(names)})")
    if not _ID.fullmatch(value):
        raise Unauthenticated(f"the credential's {what} claim is malformed")
    return value


def _roles(claims: Mapping[str, Any]) -> frozenset[str] | None:
    raw = claims.get("roles")
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(role, str) for role in raw):
        raise Unauthenticated("the credential's roles claim is malformed")
    return frozenset(raw)


def _kind(claims: Mapping[str, Any], object_id: str) -> CallerKind:
    # Entra's optional ``idtyp`` claim says it outright; without it an app-only token is one with no delegated
    # scopes whose subject is the calling service principal itself (``sub`` == ``oid``), as Microsoft documents.
    idtyp = claims.get("idtyp")
    if idtyp in ("app", "user"):
        return "app" if idtyp == "app" else "user"
    if "scp" not in claims and claims.get("sub") == object_id:
        return "app"
    return "user"


def caller_from_claims(
    claims: Mapping[str, Any], *, tenant_id: str = "", default_roles: frozenset[str] = frozenset()
) -> Caller:
    """The caller described by validated Entra ID claims (``tid``, ``oid`` or ``sub``, ``roles``, ``idtyp``/``scp``).

    ``tenant_id`` (when not empty) is the only tenant accepted. A user without a ``roles`` claim gets
    ``default_roles``; an app gets exactly the roles its token carries. Raises
    :class:`~shared.errors.Unauthenticated` when an identifying claim is missing or malformed.
    """
    tid = _identifier(claims, "tid", what="tenant (tid)")
    if tenant_id and tid.lower() != tenant_id.lower():
        raise Unauthenticated("the credential belongs to another tenant")
    oid = _identifier(claims, "oid", "sub", what="object id (oid)")
    kind = _kind(claims, oid)
    roles = _roles(claims)
    if roles is None:
        roles = default_roles if kind == "user" else frozenset()
    if kind == "app":
        name = _text(claims, "app_displayname", "azp", "appid") or oid
    else:
        name = _text(claims, "name", "preferred_username", "upn", "unique_name") or oid
    return Caller(tenant_id=tid.lower(), object_id=oid, name=name[:256], roles=roles, kind=kind)
