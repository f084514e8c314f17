"""A step result too large for a tool answer is read whole as the MCP resource get_run names."""

from __future__ import annotations

import json
from typing import Any

from mcp import ClientSession

from tests.integration.mcp.conftest import answer, endpoint, mcp_session
from tests.integration.runs.conftest import submit, wait_run
from tests.support import DevhostProcess


def test_a_stored_step_result_is_read_whole_as_a_resource(weft_mcp: DevhostProcess) -> None:
    items = [f"item-{i:05d}-" + "x" * 40 for i in range(1000)]
    run_id = submit(weft_mcp, {"mode": "plan", "plan": {"steps": [
        {"id": "big", "tool": "sort_list", "args": {"items": items, "descending": True}}]}})["id"]
    assert wait_run(weft_mcp, run_id)["status"] == "completed"

    async def steps(session: ClientSession) -> tuple[Any, Any, Any, Any]:
        templates = await session.list_resource_templates()
        got = answer(await session.call_tool("get_run", {"run_id": run_id}))
        (uri,) = got["stored_results"]
        whole = await session.read_resource(uri)
        other = await session.read_resource(f"weft://runs/{run_id}/steps/nope/result")
        return templates, uri, whole, other

    templates, uri, whole, other = mcp_session(endpoint(weft_mcp), steps)
    assert "weft://runs/{run_id}/steps/{step_id}/result" in {t.uri_template for t in templates.resource_templates}
    assert uri == f"weft://runs/{run_id}/steps/big/result"
    value = json.loads(whole.contents[0].text)
    assert value["items"][0] == items[-1] and len(value["items"]) == 1000
    assert json.loads(other.contents[0].text)["code"] == "not_found"
