"""The MCP endpoint (/runtime/webhooks/mcp) for the test app's MCP triggers: the Python and TypeScript SDK clients."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.integration.devhost.conftest import KEYS
from tests.support import ROOT, DevhostProcess, http, staged_node_script

MCP_KEY = KEYS["systemKeys"]["mcp_extension"]
TS_CLIENT = ROOT / "tests" / "fakes" / "mcp_ts_client.mjs"


def endpoint(devhost: DevhostProcess) -> str:
    return devhost.base_url + "/runtime/webhooks/mcp"


async def with_session(url: str, steps: Any, headers: dict[str, str] | None = None) -> Any:
    async with (
        httpx2.AsyncClient(headers=headers or {}, timeout=30) as client,
        streamable_http_client(url, http_client=client) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        init = await session.initialize()
        return init, await steps(session)


def run(url: str, steps: Any, headers: dict[str, str] | None = None) -> Any:
    return asyncio.run(with_session(url, steps, headers))


def text(result: Any) -> str:
    assert len(result.content) == 1
    return result.content[0].text


def test_initialize_reports_host_json_server_info(devhost: DevhostProcess) -> None:
    init, _ = run(endpoint(devhost), lambda s: asyncio.sleep(0))
    assert (init.server_info.name, init.server_info.version) == ("devhost-test-app", "2.5.0")
    assert init.instructions == "Tools of the devhost test app."
    assert init.capabilities.tools is not None


def test_tools_are_listed_with_their_schemas(devhost: DevhostProcess) -> None:
    _, listed = run(endpoint(devhost), lambda s: s.list_tools())
    tools = {t.name: t for t in listed.tools}
    assert set(tools) == {"echo_text", "add", "slow", "fails", "whoami"}
    assert tools["add"].description == "Adds two integers."
    assert tools["add"].input_schema == {
        "type": "object",
        "properties": {"a": {"type": "integer", "description": ""}, "b": {"type": "integer", "description": ""}},
        "required": ["a", "b"],
    }
    assert tools["echo_text"].input_schema["properties"]["text"]["description"] == "The text to send back."
    assert tools["whoami"].input_schema["required"] == []


def test_calls_reach_the_functions(devhost: DevhostProcess) -> None:
    async def steps(s: ClientSession) -> list[Any]:
        return [await s.call_tool("add", {"a": 2, "b": 40}), await s.call_tool("echo_text", {"text": "héllo"})]

    _, (added, echoed) = run(endpoint(devhost), steps)
    assert text(added) == "42" and not added.is_error
    assert text(echoed) == "héllo"


def test_the_function_gets_the_hosts_trigger_payload(devhost: DevhostProcess) -> None:
    """Bearer token passed through, session id issued on initialize, arguments and tool name; not the host key."""
    _, result = run(endpoint(devhost), lambda s: s.call_tool("whoami", {"note": "n1"}),
                    headers={"Authorization": "Bearer caller-token", "x-functions-key": "anything"})
    seen = json.loads(text(result))
    assert seen["authorization"] == "Bearer caller-token"
    assert seen["sessionid"] and len(seen["sessionid"]) >= 16
    assert seen["arguments"] == {"note": "n1"} and seen["name"] == "whoami"
    assert seen["transport"] == "http-streamable"
    assert seen["has_key_header"] is False


def test_tool_errors(devhost: DevhostProcess) -> None:
    async def steps(s: ClientSession) -> list[Any]:
        out: list[Any] = [await s.call_tool("fails", {"reason": "secret-reason"})]
        for name, args in (("add", {"a": 1}), ("no_such_tool", {})):
            try:
                await s.call_tool(name, args)
                out.append(None)
            except MCPError as exc:
                out.append(exc)
        return out

    _, (failed, missing, unknown) = run(endpoint(devhost), steps)
    assert failed.is_error and text(failed) == "An error occurred invoking 'fails'."
    assert "secret-reason" not in text(failed)
    assert missing.error.code == -32602 and "Please provide: b" in missing.error.message
    assert unknown.error.code == -32602 and "Unknown tool" in unknown.error.message
    assert "secret-reason" in devhost.log() or "tool failure" in devhost.log()


def test_slow_calls_run_concurrently(devhost: DevhostProcess) -> None:
    async def steps(s: ClientSession) -> tuple[list[Any], float]:
        started = time.monotonic()
        results = await asyncio.gather(*(s.call_tool("slow", {"ms": 600}) for _ in range(5)))
        return list(results), time.monotonic() - started

    _, (results, elapsed) = run(endpoint(devhost), steps)
    assert [text(r) for r in results] == ["slept 600"] * 5
    assert elapsed < 2.5, f"5 calls of 0.6 s took {elapsed:.2f} s: not concurrent"


def test_resources_and_prompts(devhost: DevhostProcess) -> None:
    async def steps(s: ClientSession) -> list[Any]:
        return [await s.list_resources(), await s.read_resource("devhost://readme"),
                await s.list_prompts(), await s.get_prompt("greet", {"name": "Ann"})]

    _, (resources, read, prompts, prompt) = run(endpoint(devhost), steps)
    assert [(str(r.uri), r.name, r.mime_type) for r in resources.resources] == [
        ("devhost://readme", "readme", "text/plain")]
    assert read.contents[0].text == "devhost test app: devhost://readme"
    assert [(p.name, [a.name for a in p.arguments]) for p in prompts.prompts] == [("greet", ["name"])]
    assert prompt.messages[0].role == "user" and prompt.messages[0].content.text == "Say hello to Ann."


def test_keys_protect_the_endpoint(keyed_devhost: DevhostProcess) -> None:
    url = endpoint(keyed_devhost)
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "raw", "version": "0"}}}
    accept = {"Accept": "application/json, text/event-stream"}
    for headers in ({}, {"x-functions-key": "wrong"}, {"x-functions-key": KEYS["functionKeys"]["default"]}):
        status, _, body = http("POST", url, init, headers=accept | headers)
        assert status == 401 and body["code"] == "unauthenticated", headers
    _, result = run(url, lambda s: s.call_tool("add", {"a": 1, "b": 2}), headers={"x-functions-key": MCP_KEY})
    assert text(result) == "3"
    _, result = run(url + f"?code={KEYS['masterKey']}", lambda s: s.call_tool("add", {"a": 1, "b": 3}))
    assert text(result) == "4"


# ---- the TypeScript SDK, an independent client -------------------------------------------------------------------
@pytest.fixture(scope="module")
def ts_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return staged_node_script(TS_CLIENT, tmp_path_factory.mktemp("ts-client"))


def run_ts(script: Path, url: str, steps: list[dict[str, Any]], key: str | None = None) -> dict[str, Any]:
    args = ["node", str(script), url, json.dumps(steps)] + ([key] if key else [])
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_typescript_client(devhost: DevhostProcess, ts_client: Path) -> None:
    out = run_ts(ts_client, endpoint(devhost), [
        {"op": "list_tools"},
        {"op": "call", "name": "add", "arguments": {"a": 20, "b": 22}},
        {"op": "call", "name": "whoami", "arguments": {}},
        {"op": "call", "name": "fails", "arguments": {"reason": "x"}},
        {"op": "call", "name": "add", "arguments": {"a": 1}},
        {"op": "call", "name": "nope", "arguments": {}},
        {"op": "read", "uri": "devhost://readme"},
        {"op": "prompt", "name": "greet", "arguments": {"name": "Bo"}},
    ])
    assert out["server"] == {"name": "devhost-test-app", "version": "2.5.0"}
    assert out["instructions"] == "Tools of the devhost test app."
    listed, added, whoami, failed, missing, unknown, read, prompt = out["results"]
    assert {t["name"] for t in listed["tools"]} == {"echo_text", "add", "slow", "fails", "whoami"}
    assert added["content"] == [{"type": "text", "text": "42"}]
    seen = json.loads(whoami["content"][0]["text"])
    assert seen["authorization"] == "Bearer ts-client-token" and seen["sessionid"] == out["session"]
    assert failed["isError"] is True
    assert missing["error"]["code"] == -32602 and unknown["error"]["code"] == -32602
    assert read["contents"][0]["text"] == "devhost test app: devhost://readme"
    assert prompt["messages"][0]["content"]["text"] == "Say hello to Bo."


def test_typescript_client_with_keys(keyed_devhost: DevhostProcess, ts_client: Path) -> None:
    steps = [{"op": "call", "name": "add", "arguments": {"a": 1, "b": 1}}]
    refused = run_ts(ts_client, endpoint(keyed_devhost), steps)
    assert "connect_error" in refused and "unauthenticated" in refused["connect_error"]
    out = run_ts(ts_client, endpoint(keyed_devhost), steps, key=MCP_KEY)
    assert out["results"][0]["content"] == [{"type": "text", "text": "2"}]
