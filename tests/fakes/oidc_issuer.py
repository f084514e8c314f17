"""A loopback Microsoft Entra ID look-alike: OIDC discovery + JWKS, and real RS256 access tokens.

Laid out like a tenant of ``login.microsoftonline.com``:

- ``GET /{tenant}/v2.0/.well-known/openid-configuration`` → ``{issuer, jwks_uri, ...}``
- ``GET /{tenant}/discovery/v2.0/keys`` → ``{"keys": [JWK, ...]}`` (RSA 2048 keys made with ``cryptography``)

:meth:`FakeOidcIssuer.token` signs any claim set; the helpers mint the cases a validator must refuse (expired, not
yet valid, wrong audience/issuer, unknown key, ``alg: none``, HS256 signed with the public key, malformed) and the
ones it must accept (a user, an app-only client-credentials token with roles). :meth:`rotate` replaces the signing
key; ``discovery_requests`` / ``jwks_requests`` count what validators fetched; ``down`` and :meth:`stall` make the
issuer fail or hang. :func:`client_principal` encodes an App Service Authentication ``X-MS-CLIENT-PRINCIPAL``.

Use it as a context manager (``with FakeOidcIssuer() as issuer:``); :attr:`environment` gives the ``WEFT_AUTH_*``
settings that point Weft at it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.fakes import LoopbackServer, RecordedRequest, Response

__all__ = ["AUDIENCE", "CLIENT_APP_ID", "TENANT_ID", "FakeOidcIssuer", "SigningKey", "client_principal"]

TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
"""The fake tenant (any GUID would do)."""
AUDIENCE = "6f1c4a8e-2b7d-4c19-9e0a-5d3b8f7a1c22"
"""The Weft app registration's client id: the ``aud`` of v2 tokens."""
CLIENT_APP_ID = "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"
"""The client application that asked for the tokens (``azp``)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64json(value: Any) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


@functools.cache
def _foreign_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@dataclass(frozen=True)
class SigningKey:
    """One RSA key pair with its key id."""

    kid: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(kid=secrets.token_urlsafe(16), private_key=rsa.generate_private_key(65537, 2048))

    def jwk(self) -> dict[str, Any]:
        """The public JWK as Entra publishes it (``kty``, ``use``, ``kid``, ``n``, ``e``)."""
        public = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        return {"kty": "RSA", "use": "sig", "kid": self.kid, "n": public["n"], "e": public["e"]}

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class FakeOidcIssuer(LoopbackServer):
    """A threaded OIDC issuer on 127.0.0.1:<ephemeral> that signs real RS256 tokens."""

    def __init__(self, *, tenant_id: str = TENANT_ID, audience: str = AUDIENCE) -> None:
        super().__init__()
        self.tenant_id = tenant_id
        self.audience = audience
        self.down = False
        """When true, discovery and keys answer 503."""
        self.extra_jwks: list[dict[str, Any]] = []
        """JWKs published beside the real ones (e.g. an ``oct`` key, a malformed one)."""
        self._keys = [SigningKey.generate()]
        self._stalled = threading.Event()
        self._released = threading.Event()

    # -- addresses and settings ---------------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        """The ``iss`` of v2 tokens, and the base of the discovery document."""
        return f"{self.url}/{self.tenant_id}/v2.0"

    @property
    def jwks_uri(self) -> str:
        return f"{self.url}/{self.tenant_id}/discovery/v2.0/keys"

    @property
    def environment(self) -> dict[str, str]:
        """``WEFT_AUTH_*`` settings that make Weft validate this issuer's tokens (the refetch limit left at 0)."""
        return {
            "WEFT_AUTH_MODE": "bearer",
            "WEFT_AUTH_TENANT_ID": self.tenant_id,
            "WEFT_AUTH_ISSUER": self.issuer,
            "WEFT_AUTH_AUDIENCE": f"{self.audience},api://weft",
            "WEFT_AUTH_JWKS_REFRESH_MIN_S": "0",
            "WEFT_AUTH_HTTP_TIMEOUT_S": "2",
        }

    @property
    def discovery_requests(self) -> int:
        return sum(1 for r in self.requests if r.path.endswith("/.well-known/openid-configuration"))

    @property
    def jwks_requests(self) -> int:
        return sum(1 for r in self.requests if r.path.endswith("/keys"))

    # -- keys ---------------------------------------------------------------------------------------------------

    @property
    def current_key(self) -> SigningKey:
        return self._keys[-1]

    def rotate(self, *, keep_previous: bool = False) -> SigningKey:
        """Sign with a new key from now on; the previous one stays published only with ``keep_previous``."""
        new = SigningKey.generate()
        if keep_previous:
            self._keys.append(new)
        else:
            self._keys = [new]
        return new

    def stall(self) -> None:
        """Make discovery and key requests hang until :meth:`release` (or the server stops)."""
        self._released.clear()
        self._stalled.set()

    def release(self) -> None:
        self._stalled.clear()
        self._released.set()

    def stop(self) -> None:
        self.release()
        super().stop()

    # -- tokens -------------------------------------------------------------------------------------------------

    def claims(self, *, lifetime_s: float = 3600, **overrides: Any) -> dict[str, Any]:
        """A valid v2 delegated (user) claim set; ``overrides`` replace or add claims (``None`` removes one)."""
        now = int(time.time())
        oid = str(uuid.uuid4())
        claims: dict[str, Any] = {
            "aud": self.audience, "iss": self.issuer, "iat": now, "nbf": now, "exp": int(now + lifetime_s),
            "tid": self.tenant_id, "oid": oid, "sub": _b64url(secrets.token_bytes(32)), "azp": CLIENT_APP_ID,
            "scp": "user_impersonation", "name": "Ada Lovelace", "preferred_username": "ada@example.com",
            "ver": "2.0",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def app_claims(self, *, roles: list[str] | None = None, idtyp: bool = True, **overrides: Any) -> dict[str, Any]:
        """A valid app-only (client credentials / managed identity) claim set: ``sub`` == ``oid``, no ``scp``."""
        sp = str(uuid.uuid4())
        base = self.claims(oid=sp, sub=sp, scp=None, name=None, preferred_username=None, azp=CLIENT_APP_ID,
                           idtyp="app" if idtyp else None, roles=roles)
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def token(self, claims: Mapping[str, Any] | None = None, *, key: SigningKey | None = None,
              headers: Mapping[str, Any] | None = None, **overrides: Any) -> str:
        """``claims`` (default :meth:`claims` with ``overrides``) signed RS256 with ``key`` (default: current)."""
        signing = key or self.current_key
        body = dict(claims) if claims is not None else self.claims(**overrides)
        return jwt.encode(body, signing.private_key, algorithm="RS256",
                          headers={"kid": signing.kid, "typ": "JWT", **(headers or {})})

    def user_token(self, *, roles: list[str] | None = None, **overrides: Any) -> str:
        return self.token(self.claims(roles=roles, **overrides))

    def app_token(self, *, roles: list[str] | None = None, **overrides: Any) -> str:
        return self.token(self.app_claims(roles=roles, **overrides))

    def expired_token(self) -> str:
        now = int(time.time())
        return self.token(iat=now - 7200, nbf=now - 7200, exp=now - 3600)

    def not_yet_valid_token(self) -> str:
        now = int(time.time())
        return self.token(iat=now, nbf=now + 3600, exp=now + 7200)

    def wrong_audience_token(self) -> str:
        return self.token(aud=str(uuid.uuid4()))

    def wrong_issuer_token(self) -> str:
        return self.token(iss=f"https://login.microsoftonline.com/{uuid.uuid4()}/v2.0")

    def unknown_key_token(self) -> str:
        """Signed by a key this issuer never published, under a new key id each time."""
        return self.token(key=SigningKey(kid=secrets.token_urlsafe(16), private_key=_foreign_key()))

    def none_alg_token(self) -> str:
        """``alg: none`` with an empty signature, naming the current key id."""
        header = {"alg": "none", "typ": "JWT", "kid": self.current_key.kid}
        return f"{_b64json(header)}.{_b64json(self.claims())}."

    def hs256_public_key_token(self) -> str:
        """The classic key-confusion attack: HS256 with the issuer's public key (PEM) as the HMAC secret."""
        header = {"alg": "HS256", "typ": "JWT", "kid": self.current_key.kid}
        signing_input = f"{_b64json(header)}.{_b64json(self.claims())}"
        mac = hmac.new(self.current_key.public_pem(), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64url(mac)}"

    def malformed_token(self) -> str:
        return "not.a.jwt"

    # -- HTTP ---------------------------------------------------------------------------------------------------

    def handle(self, request: RecordedRequest) -> Response:
        if self._stalled.is_set():
            self._released.wait(timeout=30)
        if self.down:
            return Response(503, {"error": "temporarily_unavailable"})
        base = f"/{self.tenant_id}"
        if request.path == f"{base}/v2.0/.well-known/openid-configuration":
            return Response(200, {
                "issuer": self.issuer,
                "jwks_uri": self.jwks_uri,
                "authorization_endpoint": f"{self.url}{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{self.url}{base}/oauth2/v2.0/token",
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            })
        if request.path == f"{base}/discovery/v2.0/keys":
            return Response(200, {"keys": [k.jwk() for k in self._keys] + list(self.extra_jwks)})
        return Response(404, {"error": "not_found"})


def client_principal(claims: Mapping[str, Any] | list[dict[str, str]], *, auth_typ: str = "aad",
                     role_typ: str = "roles",
                     name_typ: str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name") -> str:
    """An ``X-MS-CLIENT-PRINCIPAL`` value as App Service Authentication sends it: base64 of
    ``{auth_typ, claims: [{typ, val}], name_typ, role_typ}``. A mapping becomes one entry per value (lists expand,
    as the platform repeats ``roles``)."""
    if isinstance(claims, Mapping):
        entries = [
            {"typ": typ, "val": str(v)}
            for typ, value in claims.items()
            for v in (value if isinstance(value, list) else [value])
        ]
    else:
        entries = list(claims)
    document = {"auth_typ": auth_typ, "claims": entries, "name_typ": name_typ, "role_typ": role_typ}
    return base64.b64encode(json.dumps(document).encode()).decode()
