"""OpenAPI 3 documents as tools: each operation becomes one tool.

Discovery (:func:`load_document`, :func:`openapi_tools`) turns a document into :class:`DiscoveredTool` s: the spec (name
from ``operationId``, else ``method_path``; parameters merging path, query and header parameters with the JSON request
body, ``$ref`` s inlined up to a depth limit) and a JSON *binding* saying where each argument goes. Bodies whose
properties do not clash with a parameter are flattened into the arguments; others travel under ``body``. The binding
is what :class:`~shared.sources.openapi_transport.OpenApiTransport` follows to call the operation over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import ValidationError

from shared.catalog import inline_refs, resolve_pointer
from shared.errors import InvalidRequest
from shared.models import ToolSpec
from shared.sources.cache import DiscoveredTool
from shared.sources.openapi_transport import OpenApiSettings, fetch_document
from shared.sources.ssrf import SsrfGuard

__all__ = [
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
IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization", "idempotency-key"})
"""Header parameters not offered as arguments (OpenAPI says the first three are ignored; the last is ours)."""
_NAME_MAX = 64
_DESCRIPTION_CHARS = 2000
_DROP_KEYS = frozenset({"xml", "externalDocs", "discriminator"})


# --------------------------------------------------------------------------------------------------- documents


async def load_document(location: str, *, guard: SsrfGuard, settings: OpenApiSettings | None = None) -> dict[str, Any]:
    """Read an OpenAPI 3 document (JSON or YAML) from an http(s) URL (through ``guard``) or a file path."""
    settings = settings or OpenApiSettings()
    if "://" in location:
        guard.check_scheme(location)
        raw = await fetch_document(location, guard=guard, settings=settings)
    else:
        raw = await asyncio.to_thread(_read_file, Path(location), settings.max_document_bytes)
    return parse_document(raw, where=location)


def _read_file(path: Path, max_bytes: int) -> bytes:
    try:
        if path.stat().st_size > max_bytes:
            raise InvalidRequest(f"OpenAPI document {path} is larger than {max_bytes} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"cannot read OpenAPI document {path}: {exc.strerror or exc}") from None


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
    """Inlines ``$ref`` s (``#/components/...``, through :func:`~shared.catalog.schema.inline_refs`) and converts
    OpenAPI 3.0 schema quirks to JSON Schema."""

    def __init__(self, document: Mapping[str, Any], max_depth: int) -> None:
        self.document = document
        self.max_depth = max_depth

    def deref(self, node: Any) -> Any:
        """Follow ``$ref`` s of non-schema objects (parameters, request bodies), bounded."""
        for _ in range(self.max_depth):
            if not (isinstance(node, Mapping) and isinstance(node.get("$ref"), str)):
                return node
            node = resolve_pointer(self.document, node["$ref"])
        return {}

    def schema(self, node: Any, *, request: bool = True) -> Any:
        """A self-contained JSON schema for ``node``; ``request`` drops ``readOnly`` properties. References nested
        deeper than ``max_depth`` or recursive ones become any value, described."""
        inlined = inline_refs(node, document=self.document, max_depth=self.max_depth, placeholder=_too_deep)
        return _json_schema(inlined, request=request)


def _too_deep(ref: str) -> dict[str, Any]:
    return {"description": f"{ref.rsplit('/', 1)[-1]} (nested too deeply to describe; any value)"}


def _json_schema(node: Any, *, request: bool) -> Any:
    if isinstance(node, list):
        return [_json_schema(item, request=request) for item in node]
    if not isinstance(node, Mapping):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-") or key in _DROP_KEYS:
            continue
        if key in ("properties", "patternProperties", "$defs", "definitions") and isinstance(value, Mapping):
            out[key] = {
                name: _json_schema(sub, request=request)
                for name, sub in value.items()
                if not (request and key == "properties" and isinstance(sub, Mapping) and sub.get("readOnly"))
            }
        else:
            out[key] = _json_schema(value, request=request)
    return _json_schema_2020(out)


def _json_schema_2020(out: dict[str, Any]) -> dict[str, Any]:
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
        entry: dict[str, Any] = {"name": name, "in": where, "arg": arg}
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

