"""The issuer's signing keys: OIDC discovery, then the JWKS, cached and refetched under rate limits.

- The first use (and keys older than ``jwks_max_age_s``) fetches ``{issuer}/.well-known/openid-configuration`` once
  for its ``jwks_uri``, then the key set.
- A token signed by a key id not in the cache refetches the key set, at most once per ``jwks_refresh_min_s``: key
  rotation works, a flood of made-up key ids costs the issuer one request a minute.
- Fetches are single-flight (one at a time; waiters reuse the result) and bounded by ``http_timeout_s``. A failed
  fetch with no usable key answers 503 (:class:`~shared.errors.UpstreamUnavailable`) and fails fast for
  ``jwks_retry_s``; stale keys keep working while the issuer is unreachable.
- Only RSA and EC public keys are kept (an ``oct`` key would turn a JWK into an HMAC secret).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from shared.errors import Unauthenticated, UpstreamUnavailable
from shared.identity.settings import IdentitySettings

__all__ = ["FetchNeeded", "JwksCache", "PublicKey"]

logger = logging.getLogger(__name__)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
"""A ``cryptography`` RSA or EC public key object, as PyJWT verifies with."""

_KEY_TYPES = {"RSA": "RS256", "EC": None}


class FetchNeeded(Exception):
    """Raised by :meth:`JwksCache.key` with ``fetch=False`` when answering needs a request to the issuer."""


def _parse_keys(document: Any) -> dict[str, PublicKey]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("the key set has no 'keys' list")
    keys: dict[str, PublicKey] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            continue
        if jwk.get("kty") not in _KEY_TYPES or jwk.get("use", "sig") != "sig":
            continue
        try:
            key = PyJWK(jwk, algorithm=_KEY_TYPES[jwk["kty"]]).key
        except (PyJWTError, ValueError, TypeError) as exc:
            logger.warning("skipping an unusable signing key %s: %s", jwk["kid"][:64], type(exc).__name__)
            continue
        if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            key = key.public_key()  # a published private key is a leak upstream; verifying needs only its public half
        if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            keys[jwk["kid"]] = key
    return keys


class JwksCache:
    """Signing keys by key id, for one issuer. Thread-safe."""

    def __init__(
        self, settings: IdentitySettings, http: httpx.Client, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._http = http
        self._clock = clock
        self._state_lock = threading.Lock()
        self._fetch_lock = threading.Lock()
        self._keys: dict[str, PublicKey] | None = None
        self._fetched_at = 0.0
        self._attempts = 0
        self._last_attempt: float | None = None
        """When the last fetch (successful or not) ended; rate limits count from there."""
        self._in_flight = False
        self._jwks_uri: str | None = None

    @property
    def fetches(self) -> int:
        """How many key-set fetches were attempted (for tests and metrics)."""
        return self._attempts

    def key(self, kid: str, *, fetch: bool = True) -> PublicKey:
        """The public key ``kid`` names. Raises :class:`~shared.errors.Unauthenticated` ("unknown signing key"),
        :class:`~shared.errors.UpstreamUnavailable` (issuer unreachable, no usable key) or, with ``fetch=False``,
        :class:`FetchNeeded` when only a request to the issuer can answer."""
        with self._state_lock:
            found = self._lookup(kid)
            if found is not None:
                return found
            if not self._in_flight and not self._may_fetch():
                return self._without_fetch(kid)
            if not fetch:
                raise FetchNeeded
            seen = self._last_attempt
        with self._fetch_lock:
            with self._state_lock:
                if self._last_attempt != seen:  # another thread fetched while this one waited: use its result
                    return self._lookup(kid) or self._without_fetch(kid)
                self._in_flight = True
                self._attempts += 1
            try:
                self._refresh()
            finally:
                with self._state_lock:
                    self._in_flight = False
                    self._last_attempt = self._clock()
        with self._state_lock:
            return self._lookup(kid) or self._without_fetch(kid)

    def _fresh(self) -> bool:
        return self._keys is not None and self._clock() - self._fetched_at < self._settings.jwks_max_age_s

    def _lookup(self, kid: str) -> PublicKey | None:
        return self._keys.get(kid) if self._keys is not None and self._fresh() else None

    def _may_fetch(self) -> bool:
        if self._last_attempt is None:
            return True
        usable = self._fresh()
        interval = self._settings.jwks_refresh_min_s if usable else self._settings.jwks_retry_s
        return self._clock() - self._last_attempt >= interval

    def _without_fetch(self, kid: str) -> PublicKey:
        """Answer from the cache alone: a stale key still verifies; no keys at all means the issuer is down."""
        if self._keys is None:
            raise UpstreamUnavailable("the identity provider's signing keys are unavailable; try again shortly")
        if kid in self._keys:
            return self._keys[kid]
        raise Unauthenticated("unknown signing key")

    def _refresh(self) -> None:
        try:
            if self._jwks_uri is None:
                self._jwks_uri = self._discover()
            keys = _parse_keys(self._get_json(self._jwks_uri))
        except (httpx.HTTPError, ValueError) as exc:
            self._jwks_uri = None  # rediscover next time: the key-set address may have moved
            logger.warning("fetching the identity provider's signing keys failed: %s", exc)
            return
        with self._state_lock:
            self._keys = keys
            self._fetched_at = self._clock()
        logger.info("identity provider signing keys loaded: %d", len(keys))

    def _discover(self) -> str:
        url = f"{self._settings.issuer}/.well-known/openid-configuration"
        document = self._get_json(url)
        if not isinstance(document, Mapping) or not isinstance(document.get("jwks_uri"), str):
            raise ValueError(f"{url} has no jwks_uri")
        issuer = str(document.get("issuer", "")).rstrip("/")
        # Entra's multi-tenant documents say "{tenantid}"; a tenant-specific one must name exactly our issuer.
        if issuer and "{tenantid}" not in issuer and issuer != self._settings.issuer:
            raise ValueError(f"{url} names the issuer {issuer!r}, expected {self._settings.issuer!r}")
        return str(document["jwks_uri"])

    def _get_json(self, url: str) -> Any:
        limit = self._settings.max_document_bytes
        with self._http.stream("GET", url, timeout=self._settings.http_timeout_s) as response:
            if response.status_code != 200:
                raise ValueError(f"{url} answered HTTP {response.status_code}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limit:
                    raise ValueError(f"{url} is larger than {limit} bytes (WEFT_AUTH_MAX_DOCUMENT_BYTES)")
        try:
            return json.loads(body)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{url} is not JSON") from exc
