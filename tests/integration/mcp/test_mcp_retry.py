"""An MCP ``execute`` retried under its idempotency key after its tool left the catalog (an operator removed the
tool's source) is answered with its run, as over HTTP; a new submission naming the tool gets the unknown-tool error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mcp import ClientSession

from tests.fakes.mcp_server import McpHttpServer, start_http_server
from tests.integration.mcp.conftest import answer, endpoint, mcp_env, mcp_session
from tests.support import ROOT, DevhostProcess, free_port, http

CODE = "total = await remote.add(a=2, b=3)\nresult = total"


@pytest.fixture(scope="module")
def remote() -> Iterator[McpHttpServer]:
    with start_http_server() as server:
        yield server


@pytest.fixture(scope="module")
def weft_sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    state = tmp_path_factory.mktemp("weft-mcp-retry")
    host = DevhostProcess(ROOT, state / "devhost.sqlite", free_port(),
                          mcp_env(state, WEFT_ALLOW_PRIVATE_NETWORK="true")).start()
    yield host
    host.stop()


def test_a_retry_after_its_tool_left_the_catalog_is_answered_with_its_run(
        weft_sources: DevhostProcess, remote: McpHttpServer) -> None:
    status, _, registered = http("POST", weft_sources.base_url + "/api/tools/sources",
                                 remote.source_config(alias="remote"))
    assert status == 201, registered
    # the Python name of remote.add: the run's request names the catalog's name, and so must the retry's
    call = {"code": CODE, "tools": ["remote_add", "calculate"], "idempotency_key": "retry-after-removal"}

    async def first(s: ClientSession) -> Any:
        return answer(await s.call_tool("execute", call))

    ran = mcp_session(endpoint(weft_sources), first)
    assert ran["status"] == "completed", ran
    status, _, removed = http("DELETE", f"{weft_sources.base_url}/api/tools/sources/{registered['source_id']}")
    assert status == 200 and "remote.add" in removed["removed_tools"], removed

    async def after(s: ClientSession) -> list[Any]:
        return [await s.call_tool("execute", call),
                await s.call_tool("execute", {**call, "idempotency_key": "a-new-key"}),
                await s.call_tool("execute", {**call, "code": CODE + "\nresult = 0"}),
                await s.call_tool("execute", {"code": CODE, "tools": ["remote_add"]})]

    retried, fresh, changed, keyless = mcp_session(endpoint(weft_sources), after)
    assert not retried.is_error and answer(retried)["run_id"] == ran["run_id"], answer(retried)
    assert answer(retried)["status"] == "completed"
    for refused in (fresh, keyless):
        body = answer(refused)
        assert refused.is_error and (body["code"], body["field"]) == ("invalid_request", "tools"), body
        assert body["message"].startswith("unknown tool 'remote_add'"), body
    assert changed.is_error and answer(changed)["code"] == "invalid_request", "another body under the key is no retry"
    status, _, view = http("GET", f"{weft_sources.base_url}/api/runs?limit=100")
    assert status == 200 and [r["id"] for r in view["runs"]] == [ran["run_id"]], "the retry started no other run"
