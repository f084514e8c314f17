"""One entry point for HTTP (and MCP) triggers: request headers in, :class:`~shared.identity.caller.Caller` out.

With ``WEFT_AUTH_MODE=none`` every request is :data:`~shared.identity.caller.LOCAL_CALLER` and no header is read.
Otherwise, in this order: an Easy Auth principal (only when ``easy_auth`` is listed), then an
``Authorization: Bearer`` token (only when ``bearer`` is listed); a request with neither is refused (401).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from shared.errors import NotConfigured, Unauthenticated
from shared.identity.caller import LOCAL_CALLER, Caller
from shared.identity.easy_auth import PRINCIPAL_HEADER, caller_from_principal
from shared.identity.jwks import FetchNeeded, JwksCache
from shared.identity.settings import IdentitySettings
from shared.identity.tokens import BearerValidator, bearer_token

__all__ = ["Authenticator"]

_WANTED = frozenset({"authorization", PRINCIPAL_HEADER, "x-ms-client-principal-name"})


class Authenticator:
    """Establishes the caller of a request. Build one per process (it caches the issuer's keys); thread-safe.

    ``http`` is the client used to reach the issuer (one is built, with ``WEFT_AUTH_HTTP_TIMEOUT_S``, when not
    given); ``clock`` is the monotonic clock the key cache's rate limits use.
    """

    def __init__(
        self,
        settings: IdentitySettings,
        *,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._owns_http = http is None and settings.bearer
        self._http = http if http is not None or not settings.bearer else httpx.Client(
            timeout=settings.http_timeout_s, follow_redirects=False
        )
        self._keys: JwksCache | None = None
        self._bearer: BearerValidator | None = None
        if settings.bearer:
            assert self._http is not None
            self._keys = JwksCache(settings, self._http, clock=clock)
            self._bearer = BearerValidator(settings, self._keys)

    @property
    def key_fetches(self) -> int:
        """How many times the issuer's key set was fetched (0 when bearer tokens are off)."""
        return self._keys.fetches if self._keys is not None else 0

    def authenticate(self, headers: Mapping[str, str]) -> Caller:
        """The caller of a request with ``headers`` (any key case). May call the issuer (bounded by the timeout)
        when its keys are not cached. Raises :class:`~shared.errors.Unauthenticated` (401) naming the reason, or
        :class:`~shared.errors.UpstreamUnavailable` (503) when the issuer's keys cannot be had."""
        return self._authenticate(headers, fetch=True)

    async def authenticate_async(self, headers: Mapping[str, str]) -> Caller:
        """:meth:`authenticate` for code on an event loop: validation runs inline; only a request to the issuer
        (cold or rotated keys) runs in a worker thread, so the loop never waits on the network."""
        try:
            return self._authenticate(headers, fetch=False)
        except FetchNeeded:
            return await asyncio.to_thread(self._authenticate, headers, fetch=True)

    def _authenticate(self, headers: Mapping[str, str], *, fetch: bool) -> Caller:
        settings = self.settings
        if not settings.enabled:
            return LOCAL_CALLER
        wanted = {k.lower(): v for k, v in headers.items() if k.lower() in _WANTED}
        if settings.easy_auth:
            caller = caller_from_principal(
                wanted, tenant_id=settings.tenant_id, default_roles=settings.default_roles,
                max_bytes=settings.max_principal_bytes,
            )
            if caller is not None:
                return caller
        if self._bearer is not None:
            token = bearer_token(wanted, max_bytes=settings.max_token_bytes)
            if token is not None:
                return self._bearer.validate(token, fetch=fetch)
        raise Unauthenticated(self._missing_reason(), field="Authorization")

    def _missing_reason(self) -> str:
        if self.settings.bearer and self.settings.easy_auth:
            return "no credentials: send Authorization: Bearer <token> or sign in through App Service Authentication"
        if self.settings.bearer:
            return "no credentials: send Authorization: Bearer <token>"
        return "no credentials: App Service Authentication sent no client principal"

    def protected_resource_metadata(self, resource_url: str) -> dict[str, Any]:
        """The OAuth 2.0 Protected Resource Metadata (RFC 9728) document for ``resource_url``, as MCP clients read
        from ``/.well-known/oauth-protected-resource``: the Entra authority that issues tokens for it, the scope to
        ask for and how to send the token. Raises :class:`~shared.errors.NotConfigured` when no issuer is set."""
        settings = self.settings
        if not settings.enabled or not settings.issuer:
            raise NotConfigured("identity is off or has no issuer (WEFT_AUTH_MODE, WEFT_AUTH_TENANT_ID)")
        app_id_uri = next((a for a in settings.audiences if "://" in a), None)
        resource_id = app_id_uri or (f"api://{settings.audiences[0]}" if settings.audiences else resource_url)
        scope = f"{resource_id.rstrip('/')}/{settings.required_scope or '.default'}"
        return {
            "resource": resource_url,
            "authorization_servers": [settings.issuer],
            "scopes_supported": [scope],
            "bearer_methods_supported": ["header"],
        }

    def close(self) -> None:
        """Close the HTTP client this authenticator built (not one it was given)."""
        if self._owns_http and self._http is not None:
            self._http.close()
