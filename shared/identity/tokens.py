"""Bearer-token validation for Microsoft Entra ID access tokens (v1.0 and v2.0), with PyJWT and ``cryptography``.

Checked, in order: the ``Authorization`` header's shape and size; the token's structure; the algorithm against the
allow-list (never ``none`` nor ``HS*``); the signing key by ``kid`` from the issuer's JWKS; the signature; ``iss``,
``aud``, ``exp``, ``nbf``, ``iat`` with bounded clock skew; ``tid`` (the configured tenant) and ``oid``/``sub``; the
delegated scope when one is required. Every refusal is :class:`~shared.errors.Unauthenticated` with a message naming
the reason ("token expired", "wrong audience", ...); no message or log line contains the token.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt import exceptions as jwt_errors

from shared.errors import Unauthenticated
from shared.identity.caller import Caller, caller_from_claims
from shared.identity.jwks import JwksCache
from shared.identity.settings import IdentitySettings

__all__ = ["BearerValidator", "bearer_token"]

_ALG_NAME = re.compile(r"^[A-Za-z0-9]{1,16}$")
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud"]


def bearer_token(headers: Mapping[str, str], *, max_bytes: int) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (``headers`` keys lowercased), ``None`` when there
    is no ``Authorization`` header. Raises :class:`~shared.errors.Unauthenticated` for another scheme, an empty or
    oversize token."""
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthenticated("unsupported authorization scheme (expected Bearer)", field="Authorization")
    token = token.strip()
    if not token or " " in token:
        raise Unauthenticated("malformed token", field="Authorization")
    if len(token.encode()) > max_bytes:
        raise Unauthenticated(f"token too large (over {max_bytes} bytes)", field="Authorization")
    return token


def _decode_error(exc: jwt_errors.InvalidTokenError) -> Unauthenticated:
    # Order matters: the more specific PyJWT errors subclass the general ones.
    reasons: list[tuple[type[jwt_errors.InvalidTokenError], str]] = [
        (jwt_errors.ExpiredSignatureError, "token expired"),
        (jwt_errors.ImmatureSignatureError, "token not yet valid"),
        (jwt_errors.InvalidAudienceError, "wrong audience"),
        (jwt_errors.InvalidIssuerError, "wrong issuer"),
        (jwt_errors.InvalidIssuedAtError, "malformed token: bad iat"),
        (jwt_errors.InvalidSignatureError, "invalid signature"),
        (jwt_errors.InvalidAlgorithmError, "unsupported algorithm"),
        (jwt_errors.DecodeError, "malformed token"),
    ]
    if isinstance(exc, jwt_errors.MissingRequiredClaimError):
        return Unauthenticated(f"malformed token: missing claim {exc.claim}", field="Authorization")
    for kind, reason in reasons:
        if isinstance(exc, kind):
            return Unauthenticated(reason, field="Authorization")
    return Unauthenticated("invalid token", field="Authorization")


class BearerValidator:
    """Validates Entra ID access tokens against one issuer's keys and turns them into callers."""

    def __init__(self, settings: IdentitySettings, keys: JwksCache) -> None:
        self._settings = settings
        self._keys = keys
        self._algorithms = frozenset(settings.algorithms)

    def validate(self, token: str, *, fetch: bool = True) -> Caller:
        """The caller ``token`` proves. ``fetch=False`` raises :class:`~shared.identity.jwks.FetchNeeded` instead
        of calling the issuer (for callers on an event loop). Raises :class:`~shared.errors.Unauthenticated`, or
        :class:`~shared.errors.UpstreamUnavailable` when the issuer's keys cannot be had."""
        claims = self.claims(token, fetch=fetch)
        caller = caller_from_claims(
            claims, tenant_id=self._settings.tenant_id, default_roles=self._settings.default_roles
        )
        if caller.kind == "user" and self._settings.required_scope:
            scopes = claims.get("scp")
            if not isinstance(scopes, str) or self._settings.required_scope not in scopes.split():
                raise Unauthenticated(
                    f"the token lacks the scope {self._settings.required_scope}", field="Authorization"
                )
        return caller

    def claims(self, token: str, *, fetch: bool = True) -> dict[str, Any]:
        """The verified claims of ``token`` (see :meth:`validate`)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt_errors.InvalidTokenError as exc:
            raise Unauthenticated("malformed token", field="Authorization") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            shown = alg if isinstance(alg, str) and _ALG_NAME.fullmatch(alg) else "(unnamed)"
            raise Unauthenticated(f"unsupported algorithm {shown}", field="Authorization")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("malformed token: no key id (kid)", field="Authorization")
        key = self._keys.key(kid, fetch=fetch)
        if alg.startswith("ES") == isinstance(key, rsa.RSAPublicKey):
            raise Unauthenticated(f"unsupported algorithm {alg} for this signing key", field="Authorization")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=list(self._settings.audiences),
                issuer=self._settings.accepted_issuers,
                leeway=self._settings.clock_skew_s,
                options={"require": _REQUIRED_CLAIMS, "verify_signature": True},
            )
        except jwt_errors.InvalidTokenError as exc:
            raise _decode_error(exc) from exc
        return claims
