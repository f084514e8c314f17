"""Identity settings (``WEFT_AUTH_*``): which credentials are trusted, the Entra tenant, audience and limits."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.identity.caller import Caller, Role, service_caller

__all__ = ["AUTH_MODES", "IdentitySettings"]

AUTH_MODES = frozenset({"bearer", "easy_auth"})
"""The credential sources ``WEFT_AUTH_MODE`` may list (``none`` stands alone)."""

_ALLOWED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})
_MAX_CLOCK_SKEW_S = 300.0


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class IdentitySettings:
    """Identity settings (environment names ``WEFT_AUTH_*``). The default, ``mode=()``, turns identity off: every
    request is :data:`~shared.identity.caller.LOCAL_CALLER`, as the README's quick start expects."""

    mode: tuple[str, ...] = ()
    """WEFT_AUTH_MODE: ``none`` (default), ``bearer``, ``easy_auth`` or ``easy_auth,bearer``. App Service
    Authentication's ``X-MS-CLIENT-PRINCIPAL*`` headers are trusted only when ``easy_auth`` is listed (anyone can
    send them to an app that is not behind it)."""
    tenant_id: str = ""
    """WEFT_AUTH_TENANT_ID: the Entra tenant (GUID); tokens and principals of any other tenant are refused."""
    issuer: str = ""
    """WEFT_AUTH_ISSUER: the token issuer, whose ``/.well-known/openid-configuration`` names the signing keys.
    Default ``https://login.microsoftonline.com/<tenant>/v2.0``."""
    accept_v1_issuer: bool = True
    """WEFT_AUTH_ACCEPT_V1_ISSUER: also accept v1.0 access tokens (``iss`` = ``https://sts.windows.net/<tenant>/``),
    which Entra issues when the app registration's ``accessTokenAcceptedVersion`` is null or 1."""
    audiences: tuple[str, ...] = ()
    """WEFT_AUTH_AUDIENCE: comma list of accepted ``aud`` values: the app's client id (v2 tokens) and/or its
    Application ID URI ``api://...`` (v1 tokens)."""
    required_scope: str = ""
    """WEFT_AUTH_REQUIRED_SCOPE: a delegated (user) token must carry this scope in ``scp`` (e.g.
    ``user_impersonation``); "" checks no scope. App tokens carry no scopes and are judged by roles only."""
    algorithms: tuple[str, ...] = ("RS256",)
    """WEFT_AUTH_ALGORITHMS: accepted signature algorithms (Entra signs with RS256). Only asymmetric ones may be
    listed: ``none`` and ``HS*`` are always refused."""
    clock_skew_s: float = 60.0
    """WEFT_AUTH_CLOCK_SKEW_S: leeway for ``exp``/``nbf``/``iat`` (at most 300)."""
    jwks_refresh_min_s: float = 60.0
    """WEFT_AUTH_JWKS_REFRESH_MIN_S: a token signed by an unknown key refetches the keys at most this often."""
    jwks_retry_s: float = 2.0
    """WEFT_AUTH_JWKS_RETRY_S: after a failed fetch with no usable keys, requests fail fast (503) for this long."""
    jwks_max_age_s: float = 86_400.0
    """WEFT_AUTH_JWKS_MAX_AGE_S: keys older than this are refetched (a withdrawn key stops being trusted)."""
    http_timeout_s: float = 5.0
    """WEFT_AUTH_HTTP_TIMEOUT_S: timeout of each request to the issuer (discovery, keys)."""
    max_document_bytes: int = 1_048_576
    """WEFT_AUTH_MAX_DOCUMENT_BYTES: the largest discovery or key-set document read from the issuer."""
    default_roles: frozenset[str] = frozenset()
    """WEFT_AUTH_DEFAULT_ROLES: roles given to a *user* whose token has no ``roles`` claim. Default none (least
    privilege: grant app roles in Entra); e.g. ``Runs.Submit`` lets every user of the tenant start runs. Apps never
    get default roles."""
    max_token_bytes: int = 8192
    """WEFT_AUTH_MAX_TOKEN_BYTES: a longer bearer token is refused (401) before it is parsed."""
    max_principal_bytes: int = 32_768
    """WEFT_AUTH_MAX_PRINCIPAL_BYTES: a longer ``X-MS-CLIENT-PRINCIPAL`` header is refused (401)."""
    service_name: str = "queue"
    """WEFT_AUTH_SERVICE_NAME: the object id of the service caller that queue-started runs run as."""
    service_roles: frozenset[str] = frozenset({Role.RUNS_SUBMIT.value})
    """WEFT_AUTH_SERVICE_ROLES: the service caller's roles."""

    @property
    def enabled(self) -> bool:
        """Whether identity is on (any credential source listed)."""
        return bool(self.mode)

    @property
    def bearer(self) -> bool:
        """Whether ``Authorization: Bearer`` tokens are validated."""
        return "bearer" in self.mode

    @property
    def easy_auth(self) -> bool:
        """Whether App Service Authentication's principal headers are trusted."""
        return "easy_auth" in self.mode

    @property
    def accepted_issuers(self) -> tuple[str, ...]:
        """Every ``iss`` value accepted: the issuer, and the v1.0 one of the tenant when enabled."""
        if self.accept_v1_issuer and self.tenant_id:
            return (self.issuer, f"https://sts.windows.net/{self.tenant_id}/")
        return (self.issuer,)

    def service_caller(self) -> Caller:
        """The caller queue-started work runs as."""
        return service_caller(self.service_name, self.service_roles)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IdentitySettings:
        """Read ``WEFT_AUTH_*`` variables; unset ones keep their defaults. Raises ``ValueError`` on bad values."""
        from shared.settings import env_bool, env_float, env_int, env_str

        raw_mode = env_str(env, "WEFT_AUTH_MODE", "none").strip().lower()
        mode = () if raw_mode == "none" else tuple(sorted(set(_csv(raw_mode))))
        tenant_id = env_str(env, "WEFT_AUTH_TENANT_ID", "").strip().lower()
        default_issuer = f"https://login.microsoftonline.com/{tenant_id}/v2.0" if tenant_id else ""
        settings = cls(
            mode=mode,
            tenant_id=tenant_id,
            issuer=env_str(env, "WEFT_AUTH_ISSUER", default_issuer).strip().rstrip("/"),
            accept_v1_issuer=env_bool(env, "WEFT_AUTH_ACCEPT_V1_ISSUER", cls.accept_v1_issuer),
            audiences=_csv(env_str(env, "WEFT_AUTH_AUDIENCE", "")),
            required_scope=env_str(env, "WEFT_AUTH_REQUIRED_SCOPE", "").strip(),
            algorithms=_csv(env_str(env, "WEFT_AUTH_ALGORITHMS", ",".join(cls.algorithms))),
            clock_skew_s=env_float(env, "WEFT_AUTH_CLOCK_SKEW_S", cls.clock_skew_s, minimum=0.0),
            jwks_refresh_min_s=env_float(env, "WEFT_AUTH_JWKS_REFRESH_MIN_S", cls.jwks_refresh_min_s, minimum=0.0),
            jwks_retry_s=env_float(env, "WEFT_AUTH_JWKS_RETRY_S", cls.jwks_retry_s, minimum=0.0),
            jwks_max_age_s=env_float(env, "WEFT_AUTH_JWKS_MAX_AGE_S", cls.jwks_max_age_s, minimum=1.0),
            http_timeout_s=env_float(env, "WEFT_AUTH_HTTP_TIMEOUT_S", cls.http_timeout_s, minimum=0.1),
            max_document_bytes=env_int(env, "WEFT_AUTH_MAX_DOCUMENT_BYTES", cls.max_document_bytes, minimum=1024),
            default_roles=frozenset(_csv(env_str(env, "WEFT_AUTH_DEFAULT_ROLES", ""))),
            max_token_bytes=env_int(env, "WEFT_AUTH_MAX_TOKEN_BYTES", cls.max_token_bytes, minimum=256),
            max_principal_bytes=env_int(env, "WEFT_AUTH_MAX_PRINCIPAL_BYTES", cls.max_principal_bytes, minimum=256),
            service_name=env_str(env, "WEFT_AUTH_SERVICE_NAME", cls.service_name).strip(),
            service_roles=frozenset(_csv(env_str(env, "WEFT_AUTH_SERVICE_ROLES", ",".join(cls.service_roles)))),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ``ValueError`` if the settings contradict each other or would trust what they should not."""
        unknown = set(self.mode) - AUTH_MODES
        if unknown:
            raise ValueError(f"WEFT_AUTH_MODE lists unknown sources {sorted(unknown)}; use none, bearer, easy_auth")
        if self.clock_skew_s > _MAX_CLOCK_SKEW_S:
            raise ValueError(f"WEFT_AUTH_CLOCK_SKEW_S must be at most {_MAX_CLOCK_SKEW_S:g}, got {self.clock_skew_s}")
        refused = set(self.algorithms) - _ALLOWED_ALGORITHMS
        if refused or not self.algorithms:
            raise ValueError(f"WEFT_AUTH_ALGORITHMS may list only {sorted(_ALLOWED_ALGORITHMS)}, got {sorted(refused)}")
        service_caller(self.service_name, self.service_roles)
        if not self.bearer:
            return
        if not self.issuer:
            raise ValueError("WEFT_AUTH_MODE=bearer needs WEFT_AUTH_TENANT_ID or WEFT_AUTH_ISSUER")
        if not self.audiences:
            raise ValueError("WEFT_AUTH_MODE=bearer needs WEFT_AUTH_AUDIENCE (the app's client id and/or api://...)")
        parts = urlsplit(self.issuer)
        if not parts.hostname or not (
            parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname))
        ):
            raise ValueError(f"WEFT_AUTH_ISSUER must be an https URL (http only on loopback), got {self.issuer!r}")
