"""The HTTP side of OpenAPI sources: calling an operation (:class:`OpenApiTransport`) and fetching a document.

Calls go through the SSRF guard, carry the call's ``Idempotency-Key`` and an auth header whose value is read from a
named secret at call time (:class:`HttpAuth`; never stored in a spec, a binding or a log), and map answers: 2xx to the
JSON (or text) body; 3xx and 4xx to :class:`InvalidRequest` (not retried); 408, 429, 5xx, timeouts and connection
failures to :class:`UpstreamUnavailable` (retried). Messages carry the status and a short body excerpt. The binding
a transport follows comes from :func:`shared.sources.openapi.openapi_tools`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from shared.errors import Forbidden, InvalidRequest, NotConfigured, ToolArgumentsInvalid, UpstreamUnavailable
from shared.secrets import SecretSource
from shared.settings import env_float, env_int
from shared.sources.ssrf import GuardedTransport, SsrfGuard

__all__ = [
    "HttpAuth",
    "OpenApiClient",
    "OpenApiSettings",
    "OpenApiTransport",
    "fetch_document",
    "host_allowed",
]

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 425, 429})
_EXCERPT_CHARS = 300


@dataclass(frozen=True)
class OpenApiSettings:
    """Limits of OpenAPI sources. Build with :meth:`from_env`."""

    timeout_s: float = 30.0
    """Timeout of document fetches, and of calls when the executor gives none (WEFT_OPENAPI_TIMEOUT_S)."""
    max_response_bytes: int = 1024 * 1024
    """Largest operation response read; larger ones fail (WEFT_OPENAPI_MAX_RESPONSE_BYTES)."""
    max_document_bytes: int = 10 * 1024 * 1024
    """Largest OpenAPI document fetched or read (WEFT_OPENAPI_MAX_DOCUMENT_BYTES)."""
    max_ref_depth: int = 8
    """How deep ``$ref`` s are inlined; deeper or recursive ones become ``{}`` (WEFT_OPENAPI_MAX_REF_DEPTH)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OpenApiSettings:
        """Read the ``WEFT_OPENAPI_*`` settings."""
        return cls(
            timeout_s=env_float(env, "WEFT_OPENAPI_TIMEOUT_S", cls.timeout_s, minimum=0.001),
            max_response_bytes=env_int(env, "WEFT_OPENAPI_MAX_RESPONSE_BYTES", cls.max_response_bytes, minimum=1),
            max_document_bytes=env_int(env, "WEFT_OPENAPI_MAX_DOCUMENT_BYTES", cls.max_document_bytes, minimum=1),
            max_ref_depth=env_int(env, "WEFT_OPENAPI_MAX_REF_DEPTH", cls.max_ref_depth, minimum=1),
        )


@dataclass(frozen=True)
class HttpAuth:
    """An auth header whose value is a named secret: ``{header}: {scheme} {secret value}``, sent only to the hosts an
    operator bound the secret to (``allowed_hosts``; see :class:`~shared.sources.config.SecretBindings`)."""

    secret: str
    """Name of the secret (looked up in a :class:`~shared.secrets.SecretSource` at call time)."""
    header: str = "Authorization"
    """Header to send."""
    scheme: str | None = "Bearer"
    """Prefix of the value (``Bearer``, ``Basic``...); ``None`` sends the secret as it is (API keys)."""
    allowed_hosts: tuple[str, ...] = ()
    """Host patterns (``api.example.com``, ``*.example.com``) the secret may be sent to; empty: none."""

    def resolve(self, secrets: SecretSource | None, host: str) -> tuple[str, str]:
        """``(header, value)`` for a request to ``host``; :class:`Forbidden` when the secret is not bound to that
        host (checked before the secret is read), :class:`NotConfigured` when there is no secret source."""
        if not host_allowed(host, self.allowed_hosts):
            raise Forbidden(f"secret {self.secret!r} is not bound to host {host[:255]!r}: an operator binds secrets to "
                            "hosts in WEFT_SECRET_BINDINGS", field="auth.secret")
        if secrets is None:
            raise NotConfigured(f"the auth header needs secret {self.secret!r} but no secret source is configured")
        value = secrets.get(self.secret)
        return self.header, f"{self.scheme} {value}" if self.scheme else value


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """Whether ``host`` matches one of ``patterns``: a host name (case-insensitive) or ``*.domain`` (any host below
    ``domain``, not ``domain`` itself)."""
    host = host.lower().rstrip(".")
    for raw in patterns:
        pattern = raw.lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


# ---------------------------------------------------------------------------------------------- document fetch


async def fetch_document(url: str, *, guard: SsrfGuard, settings: OpenApiSettings) -> bytes:
    """The raw bytes of the OpenAPI document at ``url`` (through ``guard``, redirects followed, size-limited)."""
    transport = GuardedTransport(guard)
    async with httpx.AsyncClient(
        transport=transport, timeout=settings.timeout_s, follow_redirects=True, max_redirects=5, trust_env=False
    ) as client:
        try:
            async with client.stream("GET", url, headers={"Accept": "application/json, application/yaml"}) as resp:
                body = await _read_limited(resp, settings.max_document_bytes, what=f"OpenAPI document {url}")
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"fetching OpenAPI document {url} failed: {_http_error(exc)}") from None
    if resp.status_code >= 400:
        transient = resp.status_code >= 500 or resp.status_code in RETRYABLE_STATUS
        error = UpstreamUnavailable if transient else InvalidRequest
        raise error(f"fetching OpenAPI document {url} answered HTTP {resp.status_code}: {_excerpt(body)}")
    return body


# ------------------------------------------------------------------------------------------------------- calls


class OpenApiClient:
    """What the operations of one source share: HTTP clients (one per event loop), auth, guard and settings.

    ``http_transport`` makes the connection pool under the SSRF guard (tests pass an ``httpx.MockTransport``).
    """

    def __init__(
        self,
        *,
        guard: SsrfGuard,
        settings: OpenApiSettings | None = None,
        auth: HttpAuth | None = None,
        secrets: SecretSource | None = None,
        base_url: str | None = None,
        http_transport: Callable[[], httpx.AsyncBaseTransport] = httpx.AsyncHTTPTransport,
    ) -> None:
        self.guard = guard
        self.settings = settings or OpenApiSettings()
        self.auth = auth
        self.secrets = secrets
        self.base_url = base_url
        self._http_transport = http_transport
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
        self._lock = threading.Lock()

    def client(self) -> httpx.AsyncClient:
        """The HTTP client of the running event loop (an ``httpx.AsyncClient`` must not cross loops)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            for finished in [other for other in self._clients if other.is_closed()]:
                del self._clients[finished]  # its connections died with it
            client = self._clients.get(loop)
            if client is None or client.is_closed:
                client = httpx.AsyncClient(
                    transport=GuardedTransport(self.guard, inner_factory=self._http_transport),
                    follow_redirects=False, trust_env=False, timeout=self.settings.timeout_s,
                )
                self._clients[loop] = client
            return client

    async def auth_header(self, url: str) -> tuple[str, str] | None:
        """The auth header for a request to ``url``, read from the secret source now (off the event loop: it may call
        Key Vault); :class:`Forbidden` when the secret is not bound to the URL's host."""
        if self.auth is None:
            return None
        return await asyncio.to_thread(self.auth.resolve, self.secrets, urlsplit(url).hostname or "")

    async def aclose(self) -> None:
        """Close the HTTP client of the running event loop."""
        with self._lock:
            client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()


class OpenApiTransport:
    """Calls one OpenAPI operation (a :class:`~shared.catalog.catalog.ToolTransport`)."""

    def __init__(self, client: OpenApiClient, binding: Mapping[str, Any]) -> None:
        self.client = client
        self.method = str(binding["method"])
        self.path = str(binding["path"])
        self.server = str(client.base_url or binding.get("server") or "/")
        self.params = [dict(param) for param in binding.get("params") or []]
        self.body = dict(binding["body"]) if binding.get("body") else None

    def build(self, args: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]], dict[str, str], Any]:
        """``(url, query, headers, json body)`` for ``args``."""
        if "://" not in self.server:
            raise NotConfigured(f"the OpenAPI server URL {self.server!r} is relative; set the source's base_url")
        path = self.path
        query: list[tuple[str, str]] = []
        headers: dict[str, str] = {}
        used: set[str] = set()
        for param in self.params:
            arg, where = param["arg"], param["in"]
            used.add(arg)
            if arg not in args or args[arg] is None:
                if where == "path":
                    raise ToolArgumentsInvalid(f"missing required argument {arg!r}", field=f"args.{arg}")
                continue
            value = args[arg]
            if where == "path":
                path = path.replace(f"{{{param['name']}}}", quote(_text(value), safe=""))
            elif where == "query":
                values = value if isinstance(value, list) else [value]
                if param.get("explode", True):
                    query.extend((param["name"], _text(item)) for item in values)
                else:
                    query.append((param["name"], ",".join(_text(item) for item in values)))
            elif where == "header":
                headers[param["name"]] = _text(value)
        body: Any = None
        if self.body is not None:
            if self.body["mode"] == "nested":
                body = args.get(self.body["arg"])
            else:
                body = {key: value for key, value in args.items() if key not in used} or None
        return self.server.rstrip("/") + "/" + path.lstrip("/"), query, headers, body

    async def call(self, args: Mapping[str, Any], *, idempotency_key: str, timeout_s: float | None) -> Any:
        """Send the request and map the answer (see the module docstring)."""
        url, query, headers, body = self.build(args)
        headers["Idempotency-Key"] = idempotency_key
        headers["Accept"] = "application/json, */*;q=0.5"
        auth = await self.client.auth_header(url)
        if auth is not None:
            headers[auth[0]] = auth[1]
        if body is not None and self.body is not None:
            headers["Content-Type"] = self.body["content_type"]
        content = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        what = f"{self.method} {self.path}"
        limit = self.client.settings.max_response_bytes
        start = time.perf_counter()
        try:
            async with self.client.client().stream(
                self.method, url, params=tuple(query), headers=headers, content=content,
                timeout=timeout_s or self.client.settings.timeout_s,
            ) as response:
                raw = await _read_limited(response, limit, what=f"the response of {what}")
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"{what} failed: {_http_error(exc)}") from None
        log.debug("openapi %s -> %s in %.0f ms", what, response.status_code, (time.perf_counter() - start) * 1000)
        return self._answer(response, raw, what, auth[1] if auth else None)

    def _answer(self, response: httpx.Response, raw: bytes, what: str, secret: str | None) -> Any:
        status = response.status_code
        if 200 <= status < 300:
            return _decode(raw, response.headers.get("content-type", ""))
        excerpt = _excerpt(raw, secret)
        message = f"{what} answered HTTP {status} {response.reason_phrase}".rstrip()
        message += f": {excerpt}" if excerpt else ""
        if status >= 500 or status in RETRYABLE_STATUS:
            retry_after = response.headers.get("retry-after")
            raise UpstreamUnavailable(message + (f" (Retry-After: {retry_after})" if retry_after else ""))
        if 300 <= status < 400:
            location = response.headers.get("location", "?")
            raise InvalidRequest(f"{message}; redirect to {location} not followed (set the source's base_url)")
        raise InvalidRequest(message)


async def _read_limited(response: httpx.Response, limit: int, *, what: str) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise InvalidRequest(f"{what} is {declared} bytes, more than the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise InvalidRequest(f"{what} is more than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type or text.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return text


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _excerpt(raw: bytes, secret: str | None = None) -> str:
    text = " ".join(raw.decode("utf-8", errors="replace").split())
    if secret:
        text = text.replace(secret, "***")
        token = secret.split(" ", 1)[-1]
        text = text.replace(token, "***") if token else text
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."


def _http_error(exc: httpx.HTTPError) -> str:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
    detail = str(exc)
    return f"{kind}: {detail}" if detail else kind
