"""The trigger payload, the answer envelope the extension reads, compact signatures, tool definitions, settings."""

from __future__ import annotations

import json

import mcp_types as types
import pytest

from devhost.mcp import tool_result
from shared.errors import InvalidRequest, NotFound, RateLimited, Unauthenticated
from shared.mcp_server import (
    INSTRUCTIONS,
    TOOLS,
    McpAnswer,
    McpSettings,
    compact_signature,
    describe,
    error_answer,
    one_line,
    parse_call,
    resource_metadata_url,
    tool_def,
)
from shared.models import ToolSpec
from tests.support import ROOT

PAYLOAD = {"name": "get_run", "arguments": {"run_id": "run-1"}, "sessionid": "s1",
           "transport": {"name": "http-streamable", "properties": {"headers": {"Authorization": "Bearer t0k3n"}}}}
SPEC = ToolSpec(
    name="weather.get", description="Current weather for a city. Uses the public API.\nSecond line.",
    parameters={"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string"}, "units": {"enum": ["metric", "imperial"]},
        "days": {"type": "array", "items": {"type": "integer"}}, "at": {"anyOf": [{"type": "string"},
                                                                                  {"type": "null"}]}}},
    side_effects=True, requires_approval=True)


def test_a_trigger_payload_is_parsed_and_never_shows_its_token() -> None:
    call = parse_call(json.dumps(PAYLOAD))
    assert (call.name, call.arguments, call.session_id) == ("get_run", {"run_id": "run-1"}, "s1")
    assert call.headers == {"Authorization": "Bearer t0k3n"}
    assert "t0k3n" not in repr(call)
    assert parse_call({"name": "x"}).arguments == {} and parse_call({"name": "x"}).headers == {}


@pytest.mark.parametrize("payload", ["not json", "[1]", json.dumps({"arguments": [1]})], ids=["text", "list", "args"])
def test_a_payload_that_is_not_a_call_is_an_invalid_request(payload: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_call(payload)
    assert caught.value.field == "arguments"


def test_the_envelope_is_what_the_extension_turns_into_a_call_tool_result() -> None:
    ok = tool_result(McpAnswer({"run_id": "run-1", "status": "completed"}).envelope(), use_result_schema=True)
    assert isinstance(ok.content[0], types.TextContent)
    assert not ok.is_error and json.loads(ok.content[0].text) == {"run_id": "run-1", "status": "completed"}
    failed = tool_result(error_answer(NotFound("no such run", field="run_id")).envelope(), use_result_schema=True)
    assert isinstance(failed.content[0], types.TextContent)
    assert failed.is_error and json.loads(failed.content[0].text) == {
        "code": "not_found", "message": "no such run", "field": "run_id"}


def test_error_answers_add_retry_after_and_the_metadata_url() -> None:
    limited = error_answer(RateLimited("slow down", retry_after_s=2.2)).body
    assert limited["code"] == "rate_limited" and limited["retry_after_s"] == 3
    anonymous = error_answer(Unauthenticated("no credentials"), resource_metadata_url="https://w/api/x").body
    assert anonymous["resource_metadata"] == "https://w/api/x"


@pytest.mark.parametrize(("headers", "url"), [
    ({"Host": "weft.azurewebsites.net"}, "https://weft.azurewebsites.net/api/.well-known/oauth-protected-resource"),
    ({"host": "127.0.0.1:7071"}, "http://127.0.0.1:7071/api/.well-known/oauth-protected-resource"),
    ({"Host": "internal:80", "X-Forwarded-Host": "weft.example", "X-Forwarded-Proto": "https"},
     "https://weft.example/api/.well-known/oauth-protected-resource"),
    ({"Host": "evil.example/path@x"}, None),
    ({}, None),
], ids=["azure", "loopback", "forwarded", "not-a-host", "none"])
def test_the_metadata_url_comes_from_the_host_header(headers: dict[str, str], url: str | None) -> None:
    assert resource_metadata_url(headers) == url


def test_compact_signature_names_the_python_call_and_its_typed_arguments() -> None:
    assert compact_signature(SPEC) == (
        "weather_get(city: str, units?: 'metric'|'imperial', days?: list[int], at?: str|None) -> "
        "Current weather for a city. [side effects] [needs approval]")
    assert compact_signature(ToolSpec(name="ping")) == "ping()"


def test_one_line_keeps_the_first_sentence_within_the_limit() -> None:
    assert one_line("First. Second.") == "First."
    assert one_line("a" * 200, limit=20) == "a" * 19 + "…"
    assert one_line("") == ""


def test_describe_gives_the_schema_the_stub_and_how_the_tool_may_be_called() -> None:
    described = describe(SPEC)
    assert described["name"] == "weather.get" and described["call_as"] == "weather_get"
    assert described["stub"].startswith("async def weather_get(\n    city: str,\n")
    assert described["parameters"] == SPEC.parameters
    assert (described["side_effects"], described["requires_approval"], described["idempotent"]) == (True, True, True)


def test_six_tools_whose_descriptions_teach_the_workflow() -> None:
    assert [t.name for t in TOOLS] == ["search_tools", "describe_tools", "execute", "run_plan", "get_run",
                                       "cancel_run"]
    assert "describe_tools" in tool_def("search_tools").description
    assert "get_run" in tool_def("execute").description and "asyncio.gather" in tool_def("execute").description
    properties = json.loads(tool_def("describe_tools").tool_properties)
    assert properties == [{"propertyName": "names", "propertyType": "string", "description": "Tool names from "
                           "search_tools.", "isRequired": True, "isArray": True}]
    with pytest.raises(KeyError):
        tool_def("nope")


def test_host_json_carries_the_instructions_and_the_system_key_convention() -> None:
    mcp = json.loads((ROOT / "host.json").read_text())["extensions"]["mcp"]
    assert mcp["instructions"] == INSTRUCTIONS and mcp["serverName"] == "weft"
    assert mcp["system"]["webhookAuthorizationLevel"] == "System"


def test_settings_from_the_environment_and_their_bounds() -> None:
    assert McpSettings.from_env({}) == McpSettings()
    tuned = McpSettings.from_env({"WEFT_MCP_WAIT_S": "5", "WEFT_MCP_MAX_WAIT_S": "30",
                                  "WEFT_MCP_MAX_ANSWER_CHARS": "2048"})
    assert (tuned.wait_s, tuned.max_wait_s, tuned.max_answer_chars) == (5.0, 30.0, 2048)
    for env in ({"WEFT_MCP_WAIT_S": "90"}, {"WEFT_MCP_MAX_WAIT_S": "300", "WEFT_MCP_WAIT_S": "1"},
                {"WEFT_MCP_MAX_ANSWER_CHARS": "10"}, {"WEFT_MCP_WAIT_S": "soon"}):
        with pytest.raises(ValueError):
            McpSettings.from_env(env)
