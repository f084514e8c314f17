"""With identity on (bearer tokens from the loopback OIDC issuer), the MCP tools have the HTTP API's callers: the
token in the MCP request authenticates, a run belongs to whoever started it, caller B's MCP session cannot read or
cancel caller A's run (with either client), no token is an error result pointing at the protected-resource metadata,
which the app serves."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession

from tests.fakes.oidc_issuer import FakeOidcIssuer
from tests.integration.mcp.conftest import answer, endpoint, mcp_env, mcp_session, run_ts
from tests.support import ROOT, DevhostProcess, free_port, http

CODE = "r = await calculate(expression='6*7')\nresult = r['result']"


@pytest.fixture(scope="module")
def issuer() -> Iterator[FakeOidcIssuer]:
    with FakeOidcIssuer() as server:
        yield server


@pytest.fixture(scope="module")
def weft_identity(issuer: FakeOidcIssuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    state = tmp_path_factory.mktemp("weft-mcp-identity")
    host = DevhostProcess(ROOT, state / "devhost.sqlite", free_port(), mcp_env(state, **issuer.environment)).start()
    yield host
    host.stop()


def token(issuer: FakeOidcIssuer, who: str, roles: list[str]) -> str:
    return issuer.user_token(roles=roles, oid=hashlib.sha256(who.encode()).hexdigest()[:32], name=who)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_caller_b_cannot_get_or_cancel_caller_as_run(weft_identity: DevhostProcess, issuer: FakeOidcIssuer,
                                                      ts_client: Path) -> None:
    alice = token(issuer, "alice", ["Runs.Submit"])
    bob = token(issuer, "bob", ["Runs.Submit"])
    olga = token(issuer, "olga", ["Runs.Submit", "Runs.ReadAll"])
    url = endpoint(weft_identity)

    async def as_alice(s: ClientSession) -> Any:
        return answer(await s.call_tool("execute", {"code": CODE, "tools": ["calculate"]}))

    run = mcp_session(url, as_alice, bearer(alice))
    assert run["status"] == "completed" and run["output"]["result"] == 42, run

    async def as_someone(s: ClientSession) -> list[Any]:
        return [await s.call_tool("get_run", {"run_id": run["run_id"]}),
                await s.call_tool("cancel_run", {"run_id": run["run_id"]})]

    read, cancel = mcp_session(url, as_someone, bearer(bob))
    assert read.is_error and answer(read) == {"code": "not_found", "message": "no such run", "field": "run_id"}
    assert cancel.is_error and answer(cancel)["code"] == "not_found"
    ts = run_ts(ts_client, url, [{"op": "call", "name": "get_run", "arguments": {"run_id": run["run_id"]}}], bob)
    assert ts["results"][0]["isError"] and ts["results"][0]["body"]["code"] == "not_found"

    (mine, _), (operator, _) = (mcp_session(url, as_someone, bearer(alice)), mcp_session(url, as_someone,
                                                                                          bearer(olga)))
    assert answer(mine)["output"]["result"] == 42 and answer(operator)["output"]["result"] == 42
    status, _, view = http("GET", f"{weft_identity.base_url}/api/runs/{run['run_id']}", headers=bearer(bob))
    assert status == 404, "the HTTP API agrees"
    status, _, view = http("GET", f"{weft_identity.base_url}/api/runs/{run['run_id']}", headers=bearer(alice))
    assert status == 200 and view["result"]["output"]["result"] == 42


def test_no_or_bad_token_is_an_error_result_pointing_at_the_metadata(weft_identity: DevhostProcess,
                                                                       issuer: FakeOidcIssuer) -> None:
    async def steps(s: ClientSession) -> Any:
        return await s.call_tool("search_tools", {"query": "add numbers"})

    for headers in ({}, bearer(issuer.expired_token()), bearer("not-a-jwt")):
        result = mcp_session(endpoint(weft_identity), steps, headers)
        body = answer(result)
        assert result.is_error and body["code"] == "unauthenticated", body
        assert body["resource_metadata"] == f"{weft_identity.base_url}/api/.well-known/oauth-protected-resource"
    status, _, document = http("GET", body["resource_metadata"])
    assert status == 200, document
    assert document["resource"] == endpoint(weft_identity)
    assert document["authorization_servers"] == [issuer.issuer]
    assert document["bearer_methods_supported"] == ["header"]


def test_a_caller_without_runs_submit_cannot_execute(weft_identity: DevhostProcess, issuer: FakeOidcIssuer) -> None:
    reader = token(issuer, "rita", [])

    async def steps(s: ClientSession) -> list[Any]:
        return [await s.call_tool("execute", {"code": CODE}), await s.call_tool("search_tools", {"query": "add"}),
                await s.call_tool("execute", {"code": CODE, "tools": ["no_such_tool"], "idempotency_key": "k-1"})]

    executed, searched, keyed = mcp_session(endpoint(weft_identity), steps, bearer(reader))
    assert executed.is_error and answer(executed)["code"] == "forbidden" and "Runs.Submit" in answer(executed)[
        "message"]
    # the role is checked before a keyed retry's unknown tool names send it to read an earlier run's input
    assert keyed.is_error and answer(keyed)["code"] == "forbidden", answer(keyed)
    assert not searched.is_error and answer(searched)["tools"]


def test_metadata_is_not_found_with_identity_off(weft_mcp: DevhostProcess) -> None:
    status, _, body = http("GET", f"{weft_mcp.base_url}/api/.well-known/oauth-protected-resource")
    assert status == 404 and body["code"] == "not_found"
