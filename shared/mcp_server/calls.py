"""The MCP tool triggers' payload and answer: what the Functions MCP extension hands a tool function, and the
``call_tool_result`` envelope the function gives back (the form the ``azure-functions`` library's own
``mcp_tool`` decorator returns when a trigger has ``use_result_schema``)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.errors import InvalidRequest, RateLimited, WeftError
from shared.models import parse_json

__all__ = ["McpAnswer", "McpCall", "error_answer", "parse_call"]

_MAX_PAYLOAD_CHARS = 4 * 1024 * 1024


@dataclass(frozen=True)
class McpCall:
    """One ``tools/call`` as the extension hands it to the function."""

    name: str
    arguments: dict[str, Any]
    headers: dict[str, str] = field(repr=False)
    """The MCP request's HTTP headers (``transport.properties.headers``): the bearer token reaches the app here.
    Kept out of ``repr`` so a token never reaches a log line."""
    session_id: str | None = None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def parse_call(context: str | bytes | Mapping[str, Any]) -> McpCall:
    """The :class:`McpCall` in a trigger payload ``{name, arguments, sessionid, transport: {properties:
    {headers}}}`` (JSON text or already parsed); raises :class:`InvalidRequest` when it is not one."""
    data: Any = context
    if isinstance(context, bytes | str):
        if len(context) > _MAX_PAYLOAD_CHARS:
            raise InvalidRequest(f"the tool call may be at most {_MAX_PAYLOAD_CHARS} characters", field="arguments")
        data = parse_json(context, message="the tool call payload is not JSON", field="arguments")
    if not isinstance(data, Mapping):
        raise InvalidRequest("the tool call payload must be a JSON object", field="arguments")
    arguments = data.get("arguments") or {}
    if not isinstance(arguments, Mapping):
        raise InvalidRequest("arguments must be an object", field="arguments")
    transport = _mapping(data.get("transport"))
    raw_headers = _mapping(_mapping(transport.get("properties")).get("headers"))
    headers = {str(k): str(v) for k, v in raw_headers.items() if isinstance(v, str | int)}
    session = data.get("sessionid") or data.get("sessionId")
    return McpCall(name=str(data.get("name") or ""), arguments=dict(arguments), headers=headers,
                   session_id=str(session) if session else None)


@dataclass(frozen=True)
class McpAnswer:
    """A tool result: a JSON body as one text block, flagged ``isError`` for errors the agent should read."""

    body: dict[str, Any]
    is_error: bool = False

    @property
    def text(self) -> str:
        return json.dumps(self.body, default=str, separators=(",", ":"), ensure_ascii=False)

    def envelope(self) -> str:
        """The ``call_tool_result`` envelope the extension turns into the ``CallToolResult``."""
        result = {"content": [{"type": "text", "text": self.text}], "isError": self.is_error}
        return json.dumps({"type": "call_tool_result", "content": json.dumps(result), "structuredContent": None})


def error_answer(exc: WeftError, *, resource_metadata_url: str | None = None) -> McpAnswer:
    """``{code, message, field}`` of ``exc`` as an error result; a spent quota adds ``retry_after_s``, a missing or
    bad credential where to find out how to get one (RFC 9728 protected-resource metadata)."""
    body: dict[str, Any] = dict(exc.to_dict())
    if isinstance(exc, RateLimited):
        body["retry_after_s"] = max(1, math.ceil(exc.retry_after_s))
    if exc.http_status == 401 and resource_metadata_url:
        body["resource_metadata"] = resource_metadata_url
    return McpAnswer(body, is_error=True)
