"""Weft's MCP server end to end on the devhost: list, search, describe, execute (ten tool calls in one gather), a run
longer than the wait handed back as a run id that get_run resolves, plans, cancel, errors and paging; with the Python
SDK client and with the TypeScript SDK client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcp import ClientSession

from shared.mcp_server import INSTRUCTIONS, TOOLS
from tests.integration.mcp.conftest import answer, endpoint, mcp_session, run_ts
from tests.support import DevhostProcess, http

GATHER_TEN = """
import asyncio
squares = await asyncio.gather(*[calculate(expression=f"{i}*{i}") for i in range(10)])
print("ten calls")
result = sum(s["result"] for s in squares)
"""
SLOW = "done = await slow(delay_ms=6500)\nresult = done['delay_ms']"
TOOL_NAMES = {t.name for t in TOOLS}


def test_tools_list_is_six_tools_teaching_the_workflow(weft_mcp: DevhostProcess) -> None:
    async def steps(s: ClientSession) -> Any:
        return await s.list_tools()

    listed = mcp_session(endpoint(weft_mcp), steps)
    tools = {t.name: t for t in listed.tools}
    assert set(tools) == TOOL_NAMES
    assert "describe_tools" in tools["search_tools"].description and "get_run" in tools["execute"].description
    assert tools["describe_tools"].input_schema["properties"]["names"]["type"] == "array"
    assert tools["get_run"].input_schema["required"] == ["run_id"]
    assert tools["run_plan"].input_schema["properties"]["plan"]["type"] == "object"


def test_search_describe_execute_ten_parallel_calls(weft_mcp: DevhostProcess) -> None:
    async def steps(s: ClientSession) -> list[Any]:
        return [await s.call_tool("search_tools", {"query": "evaluate an arithmetic expression", "k": 3}),
                await s.call_tool("describe_tools", {"names": ["calculate", "no_such_tool"]}),
                await s.call_tool("execute", {"code": GATHER_TEN, "tools": ["calculate"]})]

    searched, described, executed = mcp_session(endpoint(weft_mcp), steps)
    signatures = answer(searched)["tools"]
    assert len(signatures) == 3 and any(sig.startswith("calculate(expression: str") for sig in signatures)
    description = answer(described)
    assert [t["name"] for t in description["tools"]] == ["calculate"] and description["unknown"] == ["no_such_tool"]
    assert description["tools"][0]["stub"].startswith("async def calculate(")
    assert "expression" in description["tools"][0]["parameters"]["properties"]
    run = answer(executed)
    assert not executed.is_error and run["status"] == "completed", run
    assert run["output"] == {"result": 285, "stdout": "ten calls\n"}
    assert run["steps"] == {"total": 10, "failed": []}
    status, _, view = http("GET", f"{weft_mcp.base_url}/api/runs/{run['run_id']}")
    assert status == 200 and view["result"]["mode"] == "code", "an MCP run is a normal run of the HTTP API"


def test_a_run_longer_than_the_wait_returns_a_handle_get_run_resolves(weft_mcp: DevhostProcess) -> None:
    async def steps(s: ClientSession) -> list[Any]:
        started = answer(await s.call_tool("execute", {"code": SLOW, "tools": ["slow"]}))
        early = answer(await s.call_tool("get_run", {"run_id": started["run_id"]}))
        final = answer(await s.call_tool("get_run", {"run_id": started["run_id"], "wait_s": 30}))
        return [started, early, final]

    started, early, final = mcp_session(endpoint(weft_mcp), steps)
    assert started["status"] in ("pending", "running") and started["run_id"].startswith("run-")
    assert "get_run" in started["next"] and early["status"] in ("pending", "running")
    assert final["status"] == "completed" and final["output"]["result"] == 6500, final


def test_plans_idempotency_cancel_and_paged_results(weft_mcp: DevhostProcess) -> None:
    plan = {"steps": [{"id": "a", "tool": "calculate", "args": {"expression": "6*7"}},
                      {"id": "b", "tool": "calculate", "args": {"expression": {"$ref": "a.expression"}},
                       "depends_on": ["a"]}]}
    big = "result = 'x' * 60000"

    async def steps(s: ClientSession) -> list[Any]:
        ran = answer(await s.call_tool("run_plan", {"plan": plan, "idempotency_key": "mcp-plan-1"}))
        again = answer(await s.call_tool("run_plan", {"plan": plan, "idempotency_key": "mcp-plan-1"}))
        slow = answer(await s.call_tool("execute", {"code": "await slow(delay_ms=60000)", "tools": ["slow"]}))
        canceled = answer(await s.call_tool("cancel_run", {"run_id": slow["run_id"]}))
        after = answer(await s.call_tool("get_run", {"run_id": slow["run_id"], "wait_s": 20}))
        paged = answer(await s.call_tool("execute", {"code": big}))
        pages = [paged["output_page"]]
        while pages[-1]["next_offset"] is not None:
            page = answer(await s.call_tool("get_run", {"run_id": paged["run_id"],
                                                        "offset": pages[-1]["next_offset"]}))
            pages.append(page["output_page"])
        return [ran, again, canceled, after, pages]

    ran, again, canceled, after, pages = mcp_session(endpoint(weft_mcp), steps)
    assert ran["status"] == "completed" and again["run_id"] == ran["run_id"], (ran, again)
    assert canceled["status"] == "canceling" and after["status"] == "canceled"
    assert len(pages) >= 3 and all(len(p["text"]) <= 24_000 for p in pages)
    assert json.loads("".join(p["text"] for p in pages))["result"] == "x" * 60000


def test_bad_input_is_an_error_result_naming_the_field(weft_mcp: DevhostProcess) -> None:
    async def steps(s: ClientSession) -> list[Any]:
        return [await s.call_tool("execute", {"code": "import os\nresult = os.getcwd()"}),
                await s.call_tool("execute", {"code": "result = 1", "tools": ["calculat"]}),
                await s.call_tool("get_run", {"run_id": "run-does-not-exist"}),
                await s.call_tool("get_run", {"run_id": "../etc"}),
                await s.call_tool("search_tools", {"query": "x", "k": 100000}),
                await s.call_tool("run_plan", {"plan": {"steps": []}}),
                await s.call_tool("describe_tools", {"names": ["zzz_nothing"]})]

    results = mcp_session(endpoint(weft_mcp), steps)
    assert all(r.is_error for r in results)
    bodies = [answer(r) for r in results]
    assert [(b["code"], b["field"]) for b in bodies] == [
        ("sandbox_violation", "code"), ("invalid_request", "tools"), ("not_found", "run_id"), ("not_found", "run_id"),
        ("invalid_request", "k"), ("invalid_request", "plan.steps"), ("invalid_request", "names")]
    assert "calculate" in bodies[1]["message"], "an unknown tool name suggests the close one"


def test_an_error_quotes_a_short_prefix_of_what_was_sent(weft_mcp: DevhostProcess) -> None:
    sent = "z" * 200_000

    async def steps(s: ClientSession) -> list[Any]:
        return [await s.call_tool("describe_tools", {"names": [sent]}),
                await s.call_tool("execute", {"code": "result = 1", "tools": [sent]}),
                await s.call_tool("search_tools", {"query": "x", sent: 1})]

    for result in mcp_session(endpoint(weft_mcp), steps):
        body = answer(result)
        assert result.is_error and len(result.content[0].text) < 1000, body["message"][:200]
        assert "z" * 20 in body["message"], "the error still says what it refers to"


def test_typescript_client(weft_mcp: DevhostProcess, ts_client: Path) -> None:
    out = run_ts(ts_client, endpoint(weft_mcp), [
        {"op": "list_tools"},
        {"op": "call", "name": "search_tools", "arguments": {"query": "convert units of length", "k": 2}},
        {"op": "call", "name": "describe_tools", "arguments": {"names": ["convert_units"]}},
        {"op": "call", "name": "execute", "arguments": {"code": GATHER_TEN}},
        {"op": "call", "name": "execute", "arguments": {"code": SLOW}},
        {"op": "poll", "run_id_from": 4, "wait_s": 10, "tries": 10},
    ])
    assert out["server"]["name"] == "weft" and out["instructions"] == INSTRUCTIONS
    listed, searched, described, executed, started, polled = out["results"]
    assert {t["name"] for t in listed["tools"]} == TOOL_NAMES
    assert any(sig.startswith("convert_units(") for sig in searched["body"]["tools"])
    assert described["body"]["tools"][0]["call_as"] == "convert_units"
    assert executed["body"]["status"] == "completed" and executed["body"]["output"]["result"] == 285
    assert started["body"]["status"] in ("pending", "running")
    assert polled["body"]["run_id"] == started["body"]["run_id"] and polled["body"]["output"]["result"] == 6500
