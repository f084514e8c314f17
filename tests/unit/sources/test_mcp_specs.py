"""MCP tools to specs, results to values, SDK failures to Weft errors (no server needed)."""

from __future__ import annotations

from typing import Any

import anyio
import httpx2
import pytest
from mcp import MCPError
from mcp import types as mcp_types

from shared.errors import (
    InvalidRequest,
    NotConfigured,
    ToolArgumentsInvalid,
    ToolFailed,
    UpstreamUnavailable,
    is_retryable,
)
from shared.sources.mcp import McpServerParams, McpSettings, mcp_tools, result_value, translate_error
from shared.sources.ssrf import DestinationNotAllowed

SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
PARAMS = McpServerParams(transport="http", url="https://mcp.example/mcp")


def tool(name: str = "search", annotations: mcp_types.ToolAnnotations | None = None, **extra: Any) -> mcp_types.Tool:
    return mcp_types.Tool(name=name, description=extra.pop("description", "Search."), input_schema=extra.pop(
        "input_schema", SCHEMA), annotations=annotations, **extra)


@pytest.mark.parametrize(
    ("annotations", "side_effects", "idempotent"),
    [
        pytest.param(None, True, False, id="none-spec-defaults"),
        pytest.param(mcp_types.ToolAnnotations(read_only_hint=True), False, True, id="read-only"),
        pytest.param(mcp_types.ToolAnnotations(read_only_hint=True, idempotent_hint=False), False, True,
                     id="read-only-wins"),
        pytest.param(mcp_types.ToolAnnotations(read_only_hint=False, idempotent_hint=True), True, True,
                     id="idempotent-writer"),
        pytest.param(mcp_types.ToolAnnotations(destructive_hint=True), True, False, id="destructive"),
        pytest.param(mcp_types.ToolAnnotations(destructive_hint=False, idempotent_hint=False), True, False,
                     id="additive"),
    ],
)
def test_annotations_decide_side_effects_and_idempotency(
    annotations: mcp_types.ToolAnnotations | None, side_effects: bool, idempotent: bool
) -> None:
    [found] = mcp_tools([tool(annotations=annotations)])
    assert (found.spec.side_effects, found.spec.idempotent) == (side_effects, idempotent)


def test_specs_carry_the_input_schema_the_alias_and_the_server_name() -> None:
    [found] = mcp_tools([tool("web search")], alias="notes", timeout_s=12.0)
    assert found.spec.name == "notes.web_search"
    assert found.spec.parameters == SCHEMA
    assert (found.spec.source, found.spec.description, found.spec.timeout_s) == ("mcp", "Search.", 12.0)
    assert found.binding == {"tool": "web search"}


def test_descriptions_fall_back_to_the_title_then_the_name() -> None:
    titled = tool("a", annotations=mcp_types.ToolAnnotations(title="Annotated title"), description=None)
    bare = tool("b", description=None)
    assert [t.spec.description for t in mcp_tools([titled, bare])] == ["Annotated title", "b"]


def test_unusable_schemas_and_name_clashes_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    broken = tool("broken", input_schema={"type": "object", "properties": {"x": {"type": 12}}})
    found = mcp_tools([broken, tool("a b"), tool("a_b"), tool("ok")])
    assert [(t.spec.name, t.binding["tool"]) for t in found] == [("a_b", "a b"), ("ok", "ok")]
    assert "skipping MCP tool 'broken'" in caplog.text
    assert "taken by another tool" in caplog.text


def test_input_schema_references_are_inlined_like_every_tool_schema(caplog: pytest.LogCaptureFixture) -> None:
    address = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    with_defs = tool("ship", input_schema={
        "type": "object", "properties": {"to": {"$ref": "#/$defs/Address"}}, "$defs": {"Address": address},
    })
    dangling = tool("lost", input_schema={"type": "object", "properties": {"to": {"$ref": "#/$defs/Nope"}}})
    [found] = mcp_tools([with_defs, dangling])
    assert found.spec.parameters == {"type": "object", "properties": {"to": address}}
    assert "skipping MCP tool 'lost'" in caplog.text and "points at nothing" in caplog.text


def text(value: str) -> mcp_types.TextContent:
    return mcp_types.TextContent(type="text", text=value)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        pytest.param(mcp_types.CallToolResult(content=[text("3")], structured_content={"result": 3}), {"result": 3},
                     id="structured-wins"),
        pytest.param(mcp_types.CallToolResult(content=[text('{"a": [1, 2]}')]), {"a": [1, 2]}, id="json-text"),
        pytest.param(mcp_types.CallToolResult(content=[text("hello")]), "hello", id="plain-text"),
        pytest.param(mcp_types.CallToolResult(content=[]), None, id="empty"),
        pytest.param(
            mcp_types.CallToolResult(content=[text("caption"), mcp_types.ImageContent(
                type="image", data="aGk=", mime_type="image/png")]),
            ["caption", {"type": "image", "mime_type": "image/png", "data": "aGk="}],
            id="several-blocks",
        ),
        pytest.param(
            mcp_types.CallToolResult(content=[mcp_types.EmbeddedResource(
                type="resource", resource=mcp_types.TextResourceContents(uri="note://1", text="body"))]),
            {"type": "resource", "uri": "note://1", "text": "body"},
            id="embedded-resource",
        ),
    ],
)
def test_result_values(result: mcp_types.CallToolResult, expected: Any) -> None:
    assert result_value(result) == expected


def test_error_results_raise_tool_failed_with_the_tool_text() -> None:
    result = mcp_types.CallToolResult(content=[text("refused:"), text("no such note")], is_error=True)
    with pytest.raises(ToolFailed, match="refused: no such note"):
        result_value(result)
    with pytest.raises(ToolFailed, match="reported an error"):
        result_value(mcp_types.CallToolResult(content=[], is_error=True))


def group(*errors: Exception) -> ExceptionGroup:
    return ExceptionGroup("unhandled errors in a TaskGroup", [ExceptionGroup("inner", list(errors))])


@pytest.mark.parametrize(
    ("failure", "expected", "retryable"),
    [
        pytest.param(MCPError(mcp_types.CONNECTION_CLOSED, "Connection closed"), UpstreamUnavailable, True,
                     id="connection-closed"),
        pytest.param(MCPError(mcp_types.REQUEST_TIMEOUT, "timed out"), UpstreamUnavailable, True, id="request-timeout"),
        pytest.param(MCPError(mcp_types.INVALID_PARAMS, "bad q"), ToolArgumentsInvalid, False, id="invalid-params"),
        pytest.param(MCPError(mcp_types.METHOD_NOT_FOUND, "Not Found"), InvalidRequest, False, id="method-not-found"),
        pytest.param(MCPError(mcp_types.INTERNAL_ERROR, "oops"), ToolFailed, True, id="internal-error"),
        pytest.param(group(httpx2.ConnectError("All connection attempts failed")), UpstreamUnavailable, True,
                     id="grouped-connect-error"),
        pytest.param(group(MCPError(mcp_types.METHOD_NOT_FOUND, "Not Found")), InvalidRequest, False,
                     id="grouped-http-404"),
        pytest.param(anyio.ClosedResourceError(), UpstreamUnavailable, True, id="closed-stream"),
        pytest.param(TimeoutError(), UpstreamUnavailable, True, id="handshake-timeout"),
        pytest.param(FileNotFoundError(2, "No such file or directory"), NotConfigured, False, id="command-missing"),
        pytest.param(group(DestinationNotAllowed("refused")), DestinationNotAllowed, False, id="weft-error-inside"),
    ],
)
def test_failures_are_translated(failure: BaseException, expected: type[Exception], retryable: bool) -> None:
    translated = translate_error(failure, PARAMS)
    assert type(translated) is expected
    assert is_retryable(translated) is retryable
    if not isinstance(translated, DestinationNotAllowed):
        assert "https://mcp.example/mcp" in str(translated)


def test_unknown_failures_are_left_alone() -> None:
    bug = KeyError("x")
    assert translate_error(bug, PARAMS) is bug


def test_descriptions_never_include_stdio_arguments() -> None:
    params = McpServerParams(transport="stdio", command="/usr/bin/server", args=("--token", "s3cret"))
    assert "s3cret" not in params.describe()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, McpSettings(), id="defaults"),
        pytest.param({"WEFT_MCP_POOL": "false", "WEFT_MCP_CONNECT_TIMEOUT_S": "5", "WEFT_MCP_CALL_TIMEOUT_S": "9"},
                     McpSettings(pool=False, connect_timeout_s=5.0, call_timeout_s=9.0), id="all-set"),
    ],
)
def test_settings_from_env(env: dict[str, str], expected: McpSettings) -> None:
    assert McpSettings.from_env(env) == expected
