"""Pure parts of the devhost's HTTP layer: host-like path decoding, key checks, the MCP schema and result mapping."""

from __future__ import annotations

import json

import mcp_types as types
import pytest

from devhost.http_errors import MalformedPath, host_path
from devhost.keys import AccessLevel, FunctionKeys
from devhost.mcp import input_schema, tool_result


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/api/runs/abc?x=1", "/api/runs/abc"),
        ("/api/runs/a%2Fb", "/api/runs/a%2Fb"),
        ("/api/runs/a%2fb", "/api/runs/a%2Fb"),
        ("/api/runs/a%20b", "/api/runs/a b"),
        ("/api/runs/.", "/api/runs/"),
        ("/api/runs/..", "/api/"),
        ("/api/runs/%2E%2E", "/api/"),
        ("/api/a/../../../b", "/b"),
        ("/api/runs/%23", "/api/runs/#"),
        ("/api/x%0Ay", "/api/x\ny"),
    ],
)
def test_host_path(raw: str, expected: str) -> None:
    assert host_path(raw) == expected


def test_host_path_rejects_bytes_that_are_not_utf8() -> None:
    with pytest.raises(MalformedPath):
        host_path("/api/%FF")


KEYS = FunctionKeys(master="m" * 40, host={"default": "h" * 40}, system={"mcp_extension": "s" * 40},
                    functions={"one": {"default": "o" * 40}})


@pytest.mark.parametrize(
    ("key", "level", "function", "system", "allowed"),
    [
        (None, AccessLevel.ANONYMOUS, None, None, True),
        (None, AccessLevel.FUNCTION, "one", None, False),
        ("h" * 40, AccessLevel.FUNCTION, "one", None, True),
        ("o" * 40, AccessLevel.FUNCTION, "one", None, True),
        ("o" * 40, AccessLevel.FUNCTION, "two", None, False),
        ("h" * 40, AccessLevel.ADMIN, None, None, False),
        ("m" * 40, AccessLevel.ADMIN, None, None, True),
        ("s" * 40, AccessLevel.SYSTEM, None, "mcp_extension", True),
        ("s" * 40, AccessLevel.SYSTEM, None, "durabletask_extension", False),
        ("s" * 40, AccessLevel.FUNCTION, "one", None, False),
        ("m" * 40, AccessLevel.SYSTEM, None, "durabletask_extension", True),
    ],
)
def test_authorize(key: str | None, level: str, function: str | None, system: str | None, allowed: bool) -> None:
    assert KEYS.authorize(key, level, function=function, system=system) is allowed


def test_presented_key_prefers_code() -> None:
    assert FunctionKeys.presented({"x-functions-key": "a"}, {"code": "b"}) == "b"
    assert FunctionKeys.presented({"x-functions-key": "a"}, {}) == "a"
    assert FunctionKeys.presented({}, {}) is None


def test_keys_file_shape_is_checked() -> None:
    with pytest.raises(ValueError, match="masterKey"):
        FunctionKeys.from_json({"functionKeys": {}}, "keys.json")
    with pytest.raises(ValueError, match="functionKeys"):
        FunctionKeys.from_json({"masterKey": "m", "functionKeys": {"default": 3}}, "keys.json")


def test_input_schema_from_tool_properties() -> None:
    props = [
        {"propertyName": "tags", "propertyType": "string", "isArray": True, "isRequired": True, "description": "t"},
        {"propertyName": "n", "propertyType": "integer", "isArray": False, "isRequired": False},
        {"propertyName": " ", "propertyType": "string"},
    ]
    assert input_schema(json.dumps(props)) == {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "description": "t"},
            "n": {"type": "integer", "description": ""},
        },
        "required": ["tags"],
    }
    assert input_schema(None) == {"type": "object", "properties": {}, "required": []}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("hi", "hi"), (None, ""), (42, "42"), ({"a": 1}, "{'a': 1}"), (b"raw", "raw")],
)
def test_plain_results_become_text_as_the_worker_encodes_them(value: object, expected: str) -> None:
    result = tool_result(value, use_result_schema=False)
    assert result.content == [types.TextContent(type="text", text=expected)] and not result.is_error


def test_result_schema_envelopes() -> None:
    structured = tool_result(json.dumps({"type": "text", "content": json.dumps({"type": "text", "text": "{}"}),
                                         "structuredContent": json.dumps({"k": 1})}), use_result_schema=True)
    assert structured.content[0].text == "{}" and structured.structured_content == {"k": 1}
    whole = {"content": [{"type": "text", "text": "a"}], "isError": True}
    full = tool_result(json.dumps({"type": "call_tool_result", "content": json.dumps(whole)}), use_result_schema=True)
    assert full.is_error and full.content[0].text == "a"
