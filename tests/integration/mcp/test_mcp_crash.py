"""kill -9 of the devhost while an MCP ``execute`` waits for its run: after a restart on the same state, the agent's
retry with the same idempotency key gets the same run back, ``get_run`` returns its result, and the idempotent write
the code made was applied once."""

from __future__ import annotations

import threading
from typing import Any

from mcp import ClientSession

from shared.demo_tools.notes import NoteStore
from tests.integration.mcp.conftest import answer, endpoint, mcp_env, mcp_session
from tests.support import ROOT, TASK_SCHEDULED, DevhostProcess, free_port, history, wait_until

CODE = """
import asyncio
waits = await asyncio.gather(slow(delay_ms=2500), slow(delay_ms=2000))
put = await note_put(key="mcp-crash", value={"waited": [w["delay_ms"] for w in waits]})
got = await note_get(key="mcp-crash")
result = {"note": got["value"], "applied": put["applied"]}
"""
KEY = "mcp-crash-1"
RUN_ID = f"run-{KEY}"
"""The local caller's run id for an idempotency key (identity off)."""


def _slow_calls_scheduled(host: DevhostProcess) -> bool:
    events = history(host.base_url, RUN_ID)
    return sum(e["EventType"] == TASK_SCHEDULED and e["Name"] == "call_tool" for e in events) == 2


def test_execute_survives_kill_9(tmp_path) -> None:
    env = mcp_env(tmp_path, WEFT_MCP_WAIT_S="60")
    first = DevhostProcess(ROOT, tmp_path / "devhost.sqlite", free_port(), env).start()
    outcome: list[Any] = []

    def execute_and_wait() -> None:
        async def steps(s: ClientSession) -> Any:
            return await s.call_tool("execute", {"code": CODE, "idempotency_key": KEY})

        try:
            outcome.append(mcp_session(endpoint(first), steps))
        except BaseException as exc:  # the host dies under this call: any failure is the point
            outcome.append(exc)

    caller = threading.Thread(target=execute_and_wait, daemon=True)
    caller.start()
    try:
        wait_until(lambda: _slow_calls_scheduled(first), 60, "the run's two slow tool calls in flight")
    finally:
        first.kill()
    caller.join(timeout=60)
    assert outcome and isinstance(outcome[0], BaseException), "the execute call died with its host"

    second = DevhostProcess(ROOT, tmp_path / "devhost.sqlite", free_port(), env).start()
    try:
        async def retry(s: ClientSession) -> list[Any]:
            again = answer(await s.call_tool("execute", {"code": CODE, "idempotency_key": KEY}))
            final = answer(await s.call_tool("get_run", {"run_id": again["run_id"], "wait_s": 30}))
            return [again, final]

        again, final = mcp_session(endpoint(second), retry)
    finally:
        second.stop()
    assert again["run_id"] == RUN_ID
    assert final["status"] == "completed", final
    assert final["output"]["result"] == {"note": {"waited": [2500, 2000]}, "applied": True}
    writes = NoteStore(tmp_path / "notes.sqlite").applications(f"{RUN_ID}:c3")
    assert writes.applied == 1 and writes.deliveries >= 1
