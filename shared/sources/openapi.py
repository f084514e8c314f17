"""OpenAPI 3 documents as tools: each operation becomes one tool, called over HTTP by :class:`OpenApiTransport`.

Discovery (:func:`load_document`, :func:`openapi_tools`) turns a document into :class:`DiscoveredTool` s: the spec (name
from ``operationId``, else ``method_path``; parameters merging path, query and header parameters with the JSON request
body, ``$ref`` s inlined up to a depth limit) and a JSON *binding* saying where each argument goes. Bodies whose
properties do not clash with a parameter are flattened into the arguments; others travel under ``body``.

Calls (:class:`OpenApiTransport`) go through the SSRF guard, carry the call's ``Idempotency-Key`` and an auth header
whose value is read from a named secret at call time (never stored in a spec, a binding or a log), and map answers:
2xx to the JSON (or text) body; 3xx and 4xx to :class:`InvalidRequest` (not retried); 408, 429, 5xx, timeouts and
connection failures to :class:`UpstreamUnavailable` (retried). Messages carry the status and a short body excerpt.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml
from pydantic import ValidationError

from shared.errors import InvalidRequest, NotConfigured, ToolArgumentsInvalid, UpstreamUnavailable
from shared.models import ToolSpec
from shared.secrets import SecretSource
from shared.settings import env_float, env_int
from shared.sources.cache import DiscoveredTool
from shared.sources.ssrf import GuardedTransport, SsrfGuard

__all__ = [
    "HttpAuth",
    "OpenApiClient",
    "OpenApiSettings",
    "OpenApiTransport",
    "load_document",
    "openapi_tools",
    "parse_document",
    "safe_tool_name",
    "tool_name",
]

log = logging.getLogger(__name__)

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
IDEMPOTENT_METHODS = SAFE_METHODS | {"PUT", "DELETE"}
RETRYABLE_STATUS = frozenset({408, 425, 429})
IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization", "idempotency-key"})
"""Header parameters not offered as arguments (OpenAPI says the first three are ignored; the last is ours)."""
_NAME_MAX = 64
_EXCERPT_CHARS = 300
_DESCRIPTION_CHARS = 2000
_DROP_KEYS = frozenset({"xml", "externalDocs", "discriminator"})


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
    """An auth header whose value is a named secret: ``{header}: {scheme} {secret value}``."""

    secret: str
    """Name of the secret (looked up in a :class:`~shared.secrets.SecretSource` at call time)."""
    header: str = "Authorization"
    """Header to send."""
    scheme: str | None = "Bearer"
    """Prefix of the value (``Bearer``, ``Basic``...); ``None`` sends the secret as it is (API keys)."""

    def resolve(self, secrets: SecretSource | None) -> tuple[str, str]:
        """``(header, value)``; :class:`NotConfigured` when there is no secret source."""
        if secrets is None:
            raise NotConfigured(f"the auth header needs secret {self.secret!r} but no secret source is configured")
        value = secrets.get(self.secret)
        return self.header, f"{self.scheme} {value}" if self.scheme else value


# --------------------------------------------------------------------------------------------------- documents


async def load_document(location: str, *, guard: SsrfGuard, settings: OpenApiSettings | None = None) -> dict[str, Any]:
    """Read an OpenAPI 3 document (JSON or YAML) from an http(s) URL (through ``guard``) or a file path."""
    settings = settings or OpenApiSettings()
    if "://" in location:
        guard.check_scheme(location)
        raw = await _fetch(location, guard=guard, settings=settings)
    else:
        path = Path(location)
        try:
            if path.stat().st_size > settings.max_document_bytes:
                raise InvalidRequest(f"OpenAPI document {location} is larger than {settings.max_document_bytes} bytes")
            raw = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise InvalidRequest(f"cannot read OpenAPI document {location}: {exc.strerror or exc}") from None
    return parse_document(raw, where=location)


async def _fetch(url: str, *, guard: SsrfGuard, settings: OpenApiSettings) -> bytes:
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


def parse_document(raw: bytes, *, where: str = "document") -> dict[str, Any]:
    """Parse JSON or YAML and check it is an OpenAPI 3 document."""
    text = raw.decode("utf-8", errors="replace")
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InvalidRequest(f"{where}: not valid JSON or YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"{where}: an OpenAPI document is an object")
    if "swagger" in data:
        raise InvalidRequest(f"{where}: Swagger {data['swagger']} is not supported; convert it to OpenAPI 3")
    if not str(data.get("openapi", "")).startswith("3."):
        raise InvalidRequest(f"{where}: not an OpenAPI 3 document (no 'openapi: 3.x' field)")
    return data


# ----------------------------------------------------------------------------------------------------- schemas


class _Inliner:
    """Inlines local ``$ref`` s (``#/components/...``) and converts OpenAPI 3.0 schema quirks to JSON Schema."""

    def __init__(self, document: Mapping[str, Any], max_depth: int) -> None:
        self.document = document
        self.max_depth = max_depth

    def deref(self, node: Any) -> Any:
        """Follow ``$ref`` s of non-schema objects (parameters, request bodies), bounded."""
        for _ in range(self.max_depth):
            if not (isinstance(node, Mapping) and isinstance(node.get("$ref"), str)):
                return node
            node = self._pointer(node["$ref"])
        return {}

    def _pointer(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise InvalidRequest(f"external $ref {ref!r} is not supported")
        node: Any = self.document
        for escaped in ref[2:].split("/"):
            part = escaped.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or part not in node:
                raise InvalidRequest(f"$ref {ref!r} points at nothing")
            node = node[part]
        return node

    def schema(self, node: Any, stack: tuple[str, ...] = (), *, request: bool = True) -> Any:
        """A self-contained JSON schema for ``node``; ``request`` drops ``readOnly`` properties."""
        if isinstance(node, list):
            return [self.schema(item, stack, request=request) for item in node]
        if not isinstance(node, Mapping):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if ref in stack or len(stack) >= self.max_depth:
                return {"description": f"{name} (nested too deeply to describe; any value)"}
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            return {**self.schema(self._pointer(ref), (*stack, ref), request=request),
                    **self.schema(siblings, stack, request=request)}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key.startswith("x-") or key in _DROP_KEYS:
                continue
            if key in ("properties", "patternProperties", "$defs", "definitions") and isinstance(value, Mapping):
                out[key] = {
                    name: self.schema(sub, stack, request=request)
                    for name, sub in value.items()
                    if not (request and key == "properties" and isinstance(sub, Mapping) and sub.get("readOnly"))
                }
            else:
                out[key] = self.schema(value, stack, request=request)
        return _json_schema_2020(out, node)


def _json_schema_2020(out: dict[str, Any], original: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.0's ``nullable`` and boolean ``exclusiveMinimum``/``exclusiveMaximum`` in JSON Schema terms."""
    if out.pop("nullable", False) is True:
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(exclusive), bool) and out.pop(exclusive) and bound in out:
            out[exclusive] = out.pop(bound)
    if "required" in out and isinstance(out.get("properties"), Mapping):
        kept = [name for name in out["required"] if name in out["properties"]]
        if kept:
            out["required"] = kept
        else:
            out.pop("required")
    return out


# -------------------------------------------------------------------------------------------------- operations


def safe_tool_name(raw: str, *, alias: str | None = None) -> str:
    """``raw`` made into a catalog name (``[A-Za-z_][A-Za-z0-9_.-]*``, at most 64 characters), prefixed ``alias.``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", raw.replace("{", "").replace("}", "")).strip("_.-") or "tool"
    name = re.sub(r"_{2,}", "_", name)
    if not re.match(r"[A-Za-z_]", name):
        name = f"op_{name}"
    prefix = f"{alias}." if alias else ""
    return prefix + name[: _NAME_MAX - len(prefix)]


def tool_name(operation_id: str | None, method: str, path: str, *, alias: str | None = None) -> str:
    """A catalog name for an operation: the sanitised ``operationId``, else ``method_path``; prefixed ``alias.``."""
    return safe_tool_name(operation_id or f"{method.lower()}_{path}", alias=alias)


def openapi_tools(
    document: Mapping[str, Any],
    *,
    alias: str | None = None,
    document_url: str | None = None,
    exclude_headers: frozenset[str] = frozenset(),
    timeout_s: float | None = None,
    max_ref_depth: int = 8,
) -> list[DiscoveredTool]:
    """One :class:`DiscoveredTool` per operation of ``document``; operations that cannot be offered are skipped with
    a warning. ``document_url`` resolves relative server URLs; ``exclude_headers`` (lowercase) are header parameters
    not offered as arguments (the source's auth header)."""
    inliner = _Inliner(document, max_ref_depth)
    root_servers = document.get("servers")
    tools: list[DiscoveredTool] = []
    names: set[str] = set()
    for path, raw_item in (document.get("paths") or {}).items():
        item = inliner.deref(raw_item)
        if not isinstance(item, Mapping):
            continue
        for method in METHODS:
            operation = item.get(method)
            if not isinstance(operation, Mapping):
                continue
            servers = operation.get("servers") or item.get("servers") or root_servers
            try:
                tool = _operation_tool(
                    inliner, path, method.upper(), operation, item.get("parameters") or [],
                    server=_server_url(servers, document_url), alias=alias,
                    exclude_headers=IGNORED_HEADERS | exclude_headers, timeout_s=timeout_s,
                )
            except (InvalidRequest, ValidationError, ValueError) as exc:
                log.warning("skipping OpenAPI operation %s %s: %s", method.upper(), path, exc)
                continue
            base, number = tool.spec.name, 2
            while tool.spec.name in names:
                suffix = f"_{number}"
                tool = DiscoveredTool(tool.spec.model_copy(update={"name": base[: _NAME_MAX - len(suffix)] + suffix}),
                                      tool.binding)
                number += 1
            names.add(tool.spec.name)
            tools.append(tool)
    return tools


def _server_url(servers: Any, document_url: str | None) -> str:
    if not isinstance(servers, list) or not servers or not isinstance(servers[0], Mapping):
        url = "/"
    else:
        url = str(servers[0].get("url") or "/")
        for name, variable in (servers[0].get("variables") or {}).items():
            url = url.replace(f"{{{name}}}", str((variable or {}).get("default", "")))
    if "://" not in url and document_url:
        url = str(httpx.URL(document_url).join(url))
    return url


def _operation_tool(
    inliner: _Inliner,
    path: str,
    method: str,
    operation: Mapping[str, Any],
    shared_params: list[Any],
    *,
    server: str,
    alias: str | None,
    exclude_headers: frozenset[str],
    timeout_s: float | None,
) -> DiscoveredTool:
    params: dict[tuple[str, str], Mapping[str, Any]] = {}
    for raw in [*shared_params, *(operation.get("parameters") or [])]:  # operation-level ones override
        param = inliner.deref(raw)
        if isinstance(param, Mapping) and "name" in param and "in" in param:
            params[(str(param["in"]), str(param["name"]))] = param
    properties: dict[str, Any] = {}
    required: list[str] = []
    bound: list[dict[str, Any]] = []
    for (where, name), param in params.items():
        if where == "cookie" or (where == "header" and name.lower() in exclude_headers):
            continue
        schema = param.get("schema")
        if schema is None and isinstance(param.get("content"), Mapping) and param["content"]:
            schema = next(iter(param["content"].values())).get("schema")
        prop = dict(inliner.schema(schema or {}))
        if param.get("description") and "description" not in prop:
            prop["description"] = str(param["description"])
        arg = name if name not in properties else f"{where}_{name}"
        properties[arg] = prop
        if where == "path" or param.get("required"):
            required.append(arg)
        entry = {"name": name, "in": where, "arg": arg}
        if where == "query" and param.get("explode") is False:
            entry["explode"] = False  # form style without explode: ?ids=1,2,3
        bound.append(entry)
    body, additional = _request_body(inliner, operation, properties, required)
    parameters: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": additional}
    if required:
        parameters["required"] = list(dict.fromkeys(required))
    summary = str(operation.get("summary") or "").strip()
    details = str(operation.get("description") or "").strip()
    description = "\n\n".join(part for part in (summary, details if details != summary else "") if part)
    if operation.get("deprecated"):
        description = f"(deprecated) {description}"
    spec = ToolSpec(
        name=tool_name(operation.get("operationId"), method, path, alias=alias),
        description=(description or f"{method} {path}")[:_DESCRIPTION_CHARS],
        parameters=parameters,
        tags=[str(tag) for tag in operation.get("tags") or []],
        source="openapi",
        side_effects=method not in SAFE_METHODS,
        idempotent=method in IDEMPOTENT_METHODS,
        timeout_s=timeout_s,
    )
    binding = {"method": method, "path": path, "server": server, "params": bound, "body": body or None}
    return DiscoveredTool(spec, binding)


def _request_body(
    inliner: _Inliner, operation: Mapping[str, Any], properties: dict[str, Any], required: list[str]
) -> tuple[dict[str, Any] | None, Any]:
    """Add the JSON body's arguments; return its binding (``None`` without one) and ``additionalProperties``."""
    request_body = inliner.deref(operation.get("requestBody"))
    if not isinstance(request_body, Mapping):
        return None, False
    content = request_body.get("content") or {}
    media = next((m for m in content if m == "application/json"), None) or next(
        (m for m in content if m.endswith(("+json", "/json"))), None
    )
    body_required = bool(request_body.get("required"))
    if media is None:
        if body_required:
            raise InvalidRequest(f"its required request body is not JSON ({', '.join(content) or 'no content'})")
        return None, False
    schema = inliner.schema((content[media] or {}).get("schema") or {})
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    composed = not isinstance(schema, Mapping) or any(k in schema for k in ("allOf", "anyOf", "oneOf", "$ref"))
    if isinstance(props, Mapping) and props and not composed and not set(props) & set(properties):
        properties.update(props)
        if body_required:
            required.extend(schema.get("required") or [])
        return {"mode": "flat", "content_type": media}, schema.get("additionalProperties", False)
    arg = "body" if "body" not in properties else "request_body"
    properties[arg] = schema
    if body_required:
        required.append(arg)
    return {"mode": "nested", "content_type": media, "arg": arg}, False


# ---------------------------------------------------------------------------------------------------- transport


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

    async def auth_header(self) -> tuple[str, str] | None:
        """The auth header, read from the secret source now (off the event loop: it may call Key Vault)."""
        if self.auth is None:
            return None
        return await asyncio.to_thread(self.auth.resolve, self.secrets)

    async def aclose(self) -> None:
        """Close the HTTP client of the running event loop."""
        with self._lock:
            client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()


class OpenApiTransport:
    """Calls one OpenAPI operation (a :class:`~shared.catalog.ToolTransport`)."""

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
        auth = await self.client.auth_header()
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
                self.method, url, params=query, headers=headers, content=content,
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
