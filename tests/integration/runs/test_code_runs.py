"""Code mode on the devhost: every tool call the code makes is a durable activity, recorded as a step; kill -9
mid-run loses no finished tool call."""

from __future__ import annotations

import json
import time

import pytest

from shared.demo_tools.notes import NoteStore
from tests.integration.runs.conftest import submit, wait_run, weft_env
from tests.support import ROOT, TASK_SCHEDULED, DevhostProcess, free_port, history, http, wait_until

TWENTY_CALLS = """
import asyncio
squares = await asyncio.gather(*[calculate(expression=f"{i}*{i}") for i in range(10)])
total = sum(s["result"] for s in squares)
for i in range(10):
    metres = await convert_units(i, "km", "m")
    total += metres["result"]
print("total", total)
result = total
"""


@pytest.mark.parametrize("execution", ["replay", "inline"])
def test_twenty_tool_calls_ten_in_one_gather(weft: DevhostProcess, execution: str) -> None:
    run_id = submit(weft, {"mode": "code", "code": TWENTY_CALLS, "tools": ["calculate", "convert_units"],
                           "options": {"code_execution": execution}})["id"]
    view = wait_run(weft, run_id)
    assert view["status"] == "completed", view["errors"]
    result = view["result"]
    assert result["output"] == {"result": 285 + 45_000, "stdout": "total 45285.0\n"}
    steps = result["steps"]
    assert [s["step_id"] for s in steps] == [f"c{i}" for i in range(1, 21)]
    assert [s["tool"] for s in steps] == ["calculate"] * 10 + ["convert_units"] * 10
    assert all(s["status"] == "succeeded" for s in steps)
    if execution == "replay":
        history = http("GET", f"{weft.base_url}/runtime/webhooks/durabletask/instances/{run_id}?showHistory=true")[2]
        scheduled = [e for e in history["historyEvents"] if e["EventType"] == 4]
        assert sum(e["Name"] == "call_tool" for e in scheduled) == 20, "each tool call is its own activity"
        assert sum(e["Name"] == "run_code_step" for e in scheduled) == 12, "1 gather round + 10 single calls + end"


@pytest.mark.parametrize(("body", "field", "words"), [
    pytest.param({"mode": "code", "code": "import os\nresult = os.getcwd()"}, "code", "not allowed",
                 id="forbidden-import"),
    pytest.param({"mode": "code", "code": "x = ().__class__"}, "code", "__class__", id="dunder"),
    pytest.param({"mode": "code", "code": "def broken(:\n  pass"}, "code", "does not parse", id="syntax"),
    pytest.param({"mode": "code", "code": "result = 1", "tools": ["nope"]}, "tools[0]", "nope", id="unknown-tool"),
    pytest.param({"mode": "code", "code": "   "}, "code", "empty", id="empty"),
])
def test_bad_code_is_a_400(weft: DevhostProcess, body: dict, field: str, words: str) -> None:
    status, _, reply = http("POST", weft.base_url + "/api/runs", body)
    assert status == 400, reply
    assert reply["field"] == field and words in reply["message"]


def test_code_errors_and_tool_failures_are_reported(weft: DevhostProcess) -> None:
    code = ("try:\n    await fail_always(message='nope')\nexcept Exception as exc:\n    print('caught', exc)\n"
            "result = 1 / 0")
    view = wait_run(weft, submit(weft, {"mode": "code", "code": code, "tools": ["fail_always"]})["id"])
    assert view["status"] == "failed"
    assert view["result"]["output"]["stdout"].startswith("caught")
    assert view["errors"][0]["code"] == "code_error" and "ZeroDivisionError" in view["errors"][0]["message"]
    assert view["result"]["steps"][0]["status"] == "failed"


KILLABLE = """
import asyncio
first = await asyncio.gather(*[note_put(key=f"early-{i}", value=i) for i in range(5)])
await slow(delay_ms=2500)
late = [await note_put(key=f"late-{i}", value=i) for i in range(3)]
result = len(first) + len(late)
"""


def test_kill_9_mid_run_loses_no_finished_tool_call(tmp_path) -> None:
    env = weft_env(None, tmp_path)
    first = DevhostProcess(ROOT, tmp_path / "d.sqlite", free_port(), env).start()
    run_id = submit(first, {"mode": "code", "code": KILLABLE, "tools": ["note_put", "slow"]})["id"]
    notes = NoteStore(tmp_path / "notes.sqlite")
    # c1..c5 have finished and the slow call (c6, 2.5 s) is handed out: the sixth tool-call activity
    wait_until(lambda: sum(e["EventType"] == TASK_SCHEDULED and e["Name"] == "call_tool"
                           for e in history(first.base_url, run_id)) == 6, 30, "the slow call (c6) in flight")
    first.kill()
    second = DevhostProcess(ROOT, tmp_path / "d.sqlite", free_port(), env).start()
    try:
        view = wait_run(second, run_id, timeout=60)
    finally:
        second.stop()
    assert view["status"] == "completed", view["errors"]
    assert view["result"]["output"]["result"] == 8
    for call in range(1, 6):
        applications = notes.applications(f"{run_id}:c{call}")
        assert (applications.applied, applications.deliveries) == (1, 1), f"c{call} ran again after the restart"
    for call in range(7, 10):
        assert notes.applications(f"{run_id}:c{call}").applied == 1
    assert json.dumps(view["result"]["steps"]).count('"succeeded"') == 9


HOLD = "await note_put(key=KEY, value=1)\nawait slow(delay_ms=DELAY)\nresult = 'held'"


def _inline(host: DevhostProcess, code: str, tools: list[str]) -> str:
    return submit(host, {"mode": "code", "code": code, "tools": tools, "options": {"code_execution": "inline"}})["id"]


def _attempts(host: DevhostProcess, run_id: str, activity: str) -> int:
    history = http("GET", f"{host.base_url}/runtime/webhooks/durabletask/instances/{run_id}?showHistory=true")[2]
    return sum(e["EventType"] == 4 and e["Name"] == activity for e in history["historyEvents"])


def test_a_busy_sandbox_is_retried_and_a_run_that_never_gets_a_slot_fails_as_sandbox_busy(tmp_path) -> None:
    # One sandbox run at once; a run waits 0.5 s for the slot, 6 attempts 100 ms apart (about 3.5 s in all).
    env = weft_env(None, tmp_path, WEFT_SANDBOX_MAX_CONCURRENT_RUNS="1", WEFT_SANDBOX_QUEUE_WAIT_SECONDS="0.5",
                   WEFT_SANDBOX_RETRY_INTERVAL_MS="100", WEFT_SANDBOX_RETRY_ATTEMPTS="6")
    host = DevhostProcess(ROOT, tmp_path / "d.sqlite", free_port(), env).start()
    notes = NoteStore(tmp_path / "notes.sqlite")

    def hold(key: str, delay_ms: int) -> str:
        run_id = _inline(host, HOLD.replace("KEY", repr(key)).replace("DELAY", str(delay_ms)), ["note_put", "slow"])
        deadline = time.monotonic() + 30
        while not notes.get(key)["found"]:  # its worker is alive and holds the only slot
            assert time.monotonic() < deadline, "the holding run never started"
            time.sleep(0.05)
        return run_id

    try:
        # held longer than every attempt of the second run together: it fails, clearly and retryably
        holder = hold("long", 10_000)
        starved = wait_run(host, _inline(host, "result = 1", []))
        assert starved["status"] == "failed"
        error = starved["errors"][0]
        assert (error["code"], error["retryable"]) == ("sandbox_busy", True), error
        assert "WEFT_SANDBOX_MAX_CONCURRENT_RUNS" in error["message"]
        assert _attempts(host, starved["id"], "run_code_inline") == 6
        assert wait_run(host, holder)["result"]["output"]["result"] == "held", "the holding run lost nothing"

        # held for less than that: the waiting run gets the slot on a later attempt and completes
        holder = hold("short", 1500)
        waited = wait_run(host, _inline(host, "result = 2", []))
        assert waited["status"] == "completed", waited["errors"]
        assert waited["result"]["output"]["result"] == 2
        assert _attempts(host, waited["id"], "run_code_inline") >= 2, "it found the sandbox busy first"
        assert wait_run(host, holder)["status"] == "completed"
    finally:
        host.stop()


@pytest.mark.parametrize("execution", ["replay", "inline"])
def test_large_tool_results_reach_the_code_whole(weft: DevhostProcess, execution: str) -> None:
    code = """
items = [f"item-{i:05d}-" + "x" * 40 for i in range(1000)]
ordered = await sort_list(items=items, descending=True)
result = {"count": len(ordered["items"]), "first": ordered["items"][0], "last": ordered["items"][-1]}
"""
    run_id = submit(weft, {"mode": "code", "code": code, "tools": ["sort_list"],
                           "options": {"code_execution": execution}})["id"]
    view = wait_run(weft, run_id)
    assert view["status"] == "completed", view["errors"]
    assert view["result"]["output"]["result"] == {"count": 1000, "first": "item-00999-" + "x" * 40,
                                                  "last": "item-00000-" + "x" * 40}
    (step,) = view["result"]["steps"]
    assert step["result"]["blob_ref"].startswith("blob:weft-payloads/") and step["result"]["size_bytes"] > 40_000
    assert len(json.dumps(step["result"])) < 2_000
