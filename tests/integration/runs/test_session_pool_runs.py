"""Code mode with WEFT_SANDBOX_BACKEND=dynamic_sessions: the devhost sends every replay step to a loopback Azure
Container Apps session pool, with a token the real azure-identity SDK gets from a loopback managed-identity
endpoint; the tools still run here, one activity per call."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.fakes.dynamic_sessions_server import FakeDynamicSessionsPool
from tests.fakes.identity_server import FakeManagedIdentityEndpoint
from tests.integration.runs.conftest import submit, wait_run, weft_env
from tests.support import ROOT, DevhostProcess, free_port, http

CLIENT_ID = "5e551015-0000-4000-8000-00000000a11c"
CODE = """
import asyncio
squares = await asyncio.gather(*[calculate(expression=f"{i}*{i}") for i in range(3)])
metres = await convert_units(2, "km", "m")
result = sum(s["result"] for s in squares) + metres["result"]
"""


@dataclass
class PoolStack:
    host: DevhostProcess
    pool: FakeDynamicSessionsPool
    identity: FakeManagedIdentityEndpoint


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoolStack]:
    identity = FakeManagedIdentityEndpoint(client_id=CLIENT_ID)
    identity.start()
    pool = FakeDynamicSessionsPool(token=identity.token_for("https://dynamicsessions.io"))
    pool.start()
    state = tmp_path_factory.mktemp("pool")
    env = weft_env(None, state, WEFT_SANDBOX_BACKEND="dynamic_sessions", WEFT_SESSION_POOL_ENDPOINT=pool.endpoint,
                   AZURE_CLIENT_ID=CLIENT_ID, **identity.environment)
    host = DevhostProcess(ROOT, state / "devhost.sqlite", free_port(), env).start()
    yield PoolStack(host, pool, identity)
    host.stop()
    pool.stop()
    identity.stop()


@pytest.mark.parametrize("execution", ["replay", "inline"])
def test_code_runs_in_the_session_pool(stack: PoolStack, execution: str) -> None:
    before = len(stack.pool.identifiers)
    run_id = submit(stack.host, {"mode": "code", "code": CODE, "tools": ["calculate", "convert_units"],
                                 "options": {"code_execution": execution}})["id"]
    view = wait_run(stack.host, run_id)
    assert view["status"] == "completed", view["errors"]
    assert view["result"]["output"]["result"] == 0 + 1 + 4 + 2000
    assert [s["tool"] for s in view["result"]["steps"]] == ["calculate"] * 3 + ["convert_units"]
    sessions = stack.pool.identifiers[before:]
    assert len(sessions) == 3, "one execution per round: the gather, the conversion, the end"
    assert len(set(sessions)) == 1, "one run keeps to one session"
    assert stack.identity.issued("https://dynamicsessions.io") >= 1


def test_code_without_tool_calls_is_one_execution(stack: PoolStack) -> None:
    before = len(stack.pool.identifiers)
    run_id = submit(stack.host, {"mode": "code", "code": "result = sum(range(10))"})["id"]
    view = wait_run(stack.host, run_id)
    assert view["status"] == "completed" and view["result"]["output"]["result"] == 45
    assert len(stack.pool.identifiers) == before + 1


def test_readiness_checks_the_session_pool_token(stack: PoolStack) -> None:
    status, _, body = http("GET", stack.host.base_url + "/api/ready", timeout=60)
    assert status in (200, 503), body  # 503 only while the search index loads
    pool = {c["name"]: c for c in body["checks"]}["session_pool"]
    assert pool["status"] == "ok" and "token for the session pool" in pool["detail"], pool
    assert "127.0.0.1" not in pool["detail"], "an anonymous readiness answer names no host"
