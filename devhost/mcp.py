"""The MCP extension's endpoint for any app: ``/runtime/webhooks/mcp`` (Streamable HTTP), served by the ``mcp`` SDK.

Like the Functions MCP extension (``Microsoft.Azure.Functions.Extensions.Mcp``):
- ``mcpToolTrigger`` functions are the server's tools; ``tools/call`` invokes the function with the trigger payload
  the host sends, the JSON text of ``{name, arguments, sessionid, transport: {name, sessionId, properties:
  {headers}}}``, so a bearer token in ``Authorization`` reaches the function, which can authenticate the caller itself;
- what the function returns becomes the tool result as the extension builds it (text content; the ``McpToolResult``
  envelope when the trigger has ``use_result_schema``); a function that raises gives ``isError`` with the extension's
  generic message; missing required properties and unknown tools are JSON-RPC ``InvalidParams`` errors;
- ``mcpResourceTrigger`` and ``mcpPromptTrigger`` functions are served as resources and prompts;
- ``host.json`` ``extensions.mcp``: ``serverName``, ``serverVersion``, ``instructions`` and
  ``system.webhookAuthorizationLevel`` (``System`` by default: the ``mcp_extension`` system key or the master key in
  ``x-functions-key`` or ``?code=``, when the devhost enforces keys);
- stateless Streamable HTTP: a session id is issued on ``initialize`` and accepted afterwards, but no state is kept,
  so sessions survive a restart of the devhost as they survive the host's.

The legacy SSE endpoint (``/runtime/webhooks/mcp/sse``) is not served.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from aiohttp import web
from azure.functions.mcp import PromptInvocationContext, _MCPToolTriggerConverter
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError

from devhost.asgi import call_asgi
from devhost.http_errors import error_response
from devhost.index import FunctionEntry, FunctionIndex
from devhost.keys import AccessLevel, FunctionKeys
from devhost.server import FunctionInvoker

__all__ = ["MCP_PATH", "McpEndpoint", "McpTool", "input_schema", "tool_result"]

log = logging.getLogger(__name__)

MCP_PATH = "/runtime/webhooks/mcp"
SESSION_HEADER = "mcp-session-id"
HIDDEN_HEADERS = frozenset({"x-functions-key"})
"""Headers kept from the function: the host's own key is no business of the app."""


@dataclass(frozen=True)
class McpTool:
    """One ``mcpToolTrigger`` function as the extension lists it."""

    name: str
    description: str
    input_schema: dict[str, Any]
    required: tuple[str, ...]
    use_result_schema: bool
    meta: dict[str, Any] | None
    entry: FunctionEntry


def _json_or_none(text: Any, what: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError:
        log.warning("devhost mcp: ignoring %s that is not JSON", what)
        return None


def input_schema(tool_properties: Any) -> dict[str, Any]:
    """The extension's input schema from ``toolProperties``: ``{type: object, properties, required}``."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for prop in _json_or_none(tool_properties, "toolProperties") or []:
        name = prop.get("propertyName") if isinstance(prop, dict) else None
        if not name or not str(name).strip():
            continue
        typed: dict[str, Any] = {"type": prop.get("propertyType") or "string"}
        if prop.get("enumValues"):
            typed["enum"] = list(prop["enumValues"])
        schema = {"type": "array", "items": typed} if prop.get("isArray") else dict(typed)
        schema["description"] = prop.get("description") or ""
        properties[name] = schema
        if prop.get("isRequired") and name not in required:
            required.append(name)
    return {"type": "object", "properties": properties, "required": required}


def _tool(entry: FunctionEntry) -> McpTool:
    trigger = entry.trigger
    schema = input_schema(getattr(trigger, "tool_properties", None))
    return McpTool(
        name=str(getattr(trigger, "tool_name", None) or entry.name),
        description=str(getattr(trigger, "description", None) or ""),
        input_schema=schema,
        required=tuple(schema["required"]),
        use_result_schema=bool(getattr(trigger, "use_result_schema", False)),
        meta=_json_or_none(getattr(trigger, "metadata", None), "tool metadata"),
        entry=entry,
    )


def tool_result(value: Any, use_result_schema: bool) -> types.CallToolResult:
    """The ``CallToolResult`` the extension builds from a function's return value (after the worker encodes it)."""
    datum = _MCPToolTriggerConverter.encode(value)
    raw = datum.value
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw if raw is not None else "")
    if not use_result_schema:
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])
    envelope = json.loads(text)
    kind = str(envelope.get("type") or "").lower()
    if kind == "call_tool_result":
        return types.CallToolResult.model_validate(json.loads(envelope["content"]))
    content = json.loads(envelope["content"])
    blocks = content if kind == "multi_content_result" else [content]
    structured = envelope.get("structuredContent")
    return types.CallToolResult.model_validate(
        {"content": blocks, "structuredContent": json.loads(structured) if structured else None}
    )


def _transport(request: Any, session_id: str | None) -> dict[str, Any]:
    headers: dict[str, str] = {}
    if request is not None:
        for key, value in request.headers.items():
            if key.lower() in HIDDEN_HEADERS:
                continue
            headers[key] = f"{headers[key]},{value}" if key in headers else value
    transport: dict[str, Any] = {"name": "http-streamable", "properties": {"headers": headers}}
    if session_id:
        transport["sessionId"] = session_id
    return transport


class McpEndpoint:
    """The MCP server for one app's MCP triggers, mounted on the devhost's aiohttp application."""

    def __init__(self, index: FunctionIndex, invoker: FunctionInvoker, keys: FunctionKeys | None) -> None:
        self.index = index
        self.invoker = invoker
        self.keys = keys
        config = (index.host_config.get("extensions") or {}).get("mcp") or {}
        system = config.get("system") or {}
        self.anonymous = str(system.get("webhookAuthorizationLevel", "System")).lower() == "anonymous"
        self.tools: dict[str, McpTool] = {}
        self.resources: dict[str, FunctionEntry] = {}
        self.prompts: dict[str, FunctionEntry] = {}
        for entry in index.functions.values():
            if entry.trigger_type == "mcpToolTrigger":
                tool = _tool(entry)
                self.tools[tool.name.lower()] = tool
            elif entry.trigger_type == "mcpResourceTrigger":
                self.resources[str(entry.trigger.uri)] = entry
            elif entry.trigger_type == "mcpPromptTrigger":
                self.prompts[str(entry.trigger.promptName).lower()] = entry
        handlers: dict[str, Any] = {"on_list_tools": self._list_tools, "on_call_tool": self._call_tool}
        if self.resources:
            handlers |= {
                "on_list_resources": self._list_resources,
                "on_list_resource_templates": self._list_resource_templates,
                "on_read_resource": self._read_resource,
            }
        if self.prompts:
            handlers |= {"on_list_prompts": self._list_prompts, "on_get_prompt": self._get_prompt}
        self.server: Server[Any] = Server(
            str(config.get("serverName") or "Azure Functions MCP server"),
            version=str(config.get("serverVersion") or "1.0.0"),
            instructions=config.get("instructions"),
            **handlers,
        )
        self.manager = StreamableHTTPSessionManager(self.server, stateless=True)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.tools or self.resources or self.prompts)

    # ---- HTTP ----------------------------------------------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", MCP_PATH, self.handle), web.route("*", MCP_PATH + "/", self.handle)]

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: the session manager runs in one task of its own for the app's lifetime."""
        ready = asyncio.Event()

        async def run() -> None:
            async with self.manager.run():
                ready.set()
                await self._stop.wait()

        self._task = asyncio.create_task(run(), name="devhost-mcp")
        await ready.wait()
        yield
        self._stop.set()
        await self._task

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self.enabled:
            return error_response(404, "the app defines no MCP tool, resource or prompt triggers", field="url")
        if self.keys is not None and not self.anonymous:
            presented = FunctionKeys.presented(request.headers, request.query)
            if not self.keys.authorize(presented, AccessLevel.SYSTEM, system="mcp_extension"):
                return error_response(
                    401,
                    "the MCP endpoint needs the mcp_extension system key (x-functions-key header or ?code=)",
                    field="code",
                )
        if request.method != "POST":
            return error_response(405, f"method {request.method} is not allowed here", headers={"Allow": "POST"})
        body = await request.read()
        extra: dict[str, str] = {}
        if SESSION_HEADER not in {k.lower() for k in request.headers} and _is_initialize(body):
            extra["Mcp-Session-Id"] = uuid.uuid4().hex
        return await call_asgi(self.manager.handle_request, request, body, extra_response_headers=extra)

    # ---- MCP handlers ----------------------------------------------------------------------------------------
    async def _list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        tools = [
            types.Tool.model_validate(
                {"name": t.name, "description": t.description, "inputSchema": t.input_schema, "_meta": t.meta}
            )
            for t in self.tools.values()
        ]
        return types.ListToolsResult(tools=tools)

    async def _call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = self.tools.get(params.name.lower())
        if tool is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: '{params.name}'")
        arguments = dict(params.arguments or {})
        missing = [name for name in tool.required if arguments.get(name) is None]
        if missing:
            raise MCPError(
                types.INVALID_PARAMS,
                "One or more required tool properties are missing values. Please provide: " + ", ".join(missing),
            )
        payload = {"name": tool.name, "arguments": arguments} | _session(ctx)
        try:
            value = await self.invoker.invoke(tool.entry, json.dumps(payload))
            return tool_result(value, tool.use_result_schema)
        except Exception:
            log.exception("Executed 'Functions.%s' (Failed)", tool.entry.name)
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=f"An error occurred invoking '{tool.name}'.")],
                is_error=True,
            )

    async def _list_resources(self, ctx: Any, params: Any) -> types.ListResourcesResult:
        listed = [_resource(entry) for uri, entry in self.resources.items() if "{" not in uri]
        return types.ListResourcesResult(resources=[types.Resource.model_validate(r) for r in listed])

    async def _list_resource_templates(self, ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
        templates = []
        for uri, entry in self.resources.items():
            if "{" in uri:
                item = _resource(entry)
                item["uriTemplate"] = item.pop("uri")
                templates.append(types.ResourceTemplate.model_validate(item))
        return types.ListResourceTemplatesResult(resource_templates=templates)

    async def _read_resource(self, ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        entry = self.resources.get(uri) or next(
            (e for template, e in self.resources.items() if "{" in template and _template_matches(template, uri)), None)
        if entry is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown resource: '{uri[:200]}'")
        value = await self.invoker.invoke(entry, json.dumps({"uri": uri} | _session(ctx)))
        mime = getattr(entry.trigger, "mimeType", None)
        if isinstance(value, bytes | bytearray):
            import base64

            content: dict[str, Any] = {"uri": uri, "mimeType": mime, "blob": base64.b64encode(value).decode()}
        else:
            content = {"uri": uri, "mimeType": mime, "text": "" if value is None else str(value)}
        return types.ReadResourceResult.model_validate({"contents": [content]})

    async def _list_prompts(self, ctx: Any, params: Any) -> types.ListPromptsResult:
        prompts = []
        for entry in self.prompts.values():
            trigger = entry.trigger
            prompts.append(
                types.Prompt.model_validate(
                    {
                        "name": trigger.promptName,
                        "title": trigger.title,
                        "description": trigger.description,
                        "arguments": _json_or_none(trigger.promptArguments, "promptArguments") or [],
                    }
                )
            )
        return types.ListPromptsResult(prompts=prompts)

    async def _get_prompt(self, ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        entry = self.prompts.get(params.name.lower())
        if entry is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: '{params.name}'")
        payload = {"name": params.name, "arguments": dict(params.arguments or {})} | _session(ctx)
        value = await self.invoker.invoke(entry, PromptInvocationContext(payload))
        if value is None:
            return types.GetPromptResult(messages=[])
        message = {"role": "user", "content": {"type": "text", "text": str(value)}}
        return types.GetPromptResult.model_validate({"messages": [message]})


def _resource(entry: FunctionEntry) -> dict[str, Any]:
    trigger = entry.trigger
    item = {
        "uri": trigger.uri,
        "name": trigger.resourceName,
        "title": trigger.title,
        "description": trigger.description,
        "mimeType": trigger.mimeType,
        "size": trigger.size,
    }
    return {k: v for k, v in item.items() if v is not None}


def _session(ctx: Any) -> dict[str, Any]:
    request = getattr(ctx, "request", None)
    headers: Mapping[str, str] = getattr(request, "headers", None) or {}
    session_id = headers.get(SESSION_HEADER)
    out: dict[str, Any] = {"transport": _transport(request, session_id)}
    if session_id:
        out["sessionid"] = session_id
    return out


def _is_initialize(body: bytes) -> bool:
    try:
        message = json.loads(body)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("method") == "initialize"


def _template_matches(template: str, uri: str) -> bool:
    """Whether ``uri`` is an instance of the RFC 6570 level-1 ``template`` (each ``{name}`` one path segment)."""
    parts = re.split(r"\{[^{}/]+\}", template)
    pattern = "[^/]+".join(re.escape(part) for part in parts)
    return re.fullmatch(pattern, uri) is not None
