"""kill -9 the devhost inside tool calls: a non-idempotent tool whose call was cut off is not executed again (the
step fails ``execution_uncertain``, flagged), and a restarted inline run replays the calls it had completed from its
journal instead of executing them again. Executions are counted in an outbox file outside the app."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from tests.integration.runs.conftest import submit, wait_run, weft_env
from tests.support import ROOT, TASK_SCHEDULED, DevhostProcess, free_port, history, wait_until

CATALOG = str(ROOT / "tests" / "fakes" / "outbox_catalog.json")


def _outbox(path: Path) -> Counter[str]:
    return Counter(json.loads(line)["to"] for line in path.read_text().splitlines()) if path.exists() else Counter()


def _scheduled(host: DevhostProcess, run_id: str, name: str) -> int:
    return sum(e["EventType"] == TASK_SCHEDULED and e["Name"] == name for e in history(host.base_url, run_id))


def test_a_non_idempotent_call_cut_off_by_a_crash_is_not_executed_again(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.jsonl"
    env = weft_env(None, tmp_path, WEFT_CATALOG_FILES=CATALOG, WEFT_TEST_OUTBOX=str(outbox))
    first = DevhostProcess(ROOT, tmp_path / "d.sqlite", free_port(), env).start()
    plans = [submit(first, {"mode": "plan", "plan": {"steps": [
        {"id": "post", "tool": "post_slowly", "args": {"to": f"plan-{i}", "delay_ms": 10_000}}]}})["id"]
        for i in range(3)]
    codes = [submit(first, {"mode": "code", "tools": ["post_slowly"], "code": (
        f"try:\n    await post_slowly(to='code-{i}', delay_ms=10_000)\nexcept Exception as exc:\n"
        "    result = str(exc)\n")})["id"] for i in range(2)]
    wait_until(lambda: len(_outbox(outbox)) == 5, 60, "every post executed (the tool is still answering)")
    first.kill()

    second = DevhostProcess(ROOT, tmp_path / "d.sqlite", free_port(), env).start()
    try:
        views = [wait_run(second, run_id, timeout=60) for run_id in plans + codes]
    finally:
        second.stop()
    assert _outbox(outbox) == Counter([f"plan-{i}" for i in range(3)] + [f"code-{i}" for i in range(2)])
    for view in views[:3]:  # the plan step says the post may have happened; it did not happen twice
        assert view["status"] == "completed_with_errors", view
        (step,) = view["result"]["steps"]
        assert step["status"] == "failed" and step["error"]["code"] == "execution_uncertain", step
        assert "may already have executed" in step["error"]["message"]
    for view in views[3:]:  # the code got the error as an exception, and its step is flagged
        assert view["status"] == "completed_with_errors", view
        assert "may already have executed" in view["result"]["output"]["result"]
        (step,) = view["result"]["steps"]
        assert step["error"]["code"] == "execution_uncertain" and step["redelivered"] is True, step


INLINE = """
first = await post_slowly(to=TAG + "-1", delay_ms=0)
second = await post_slowly(to=TAG + "-2", delay_ms=0)
await slow(delay_ms=8000)
third = await post_slowly(to=TAG + "-3", delay_ms=0)
result = [first["to"], second["to"], third["to"]]
"""


def test_a_restarted_inline_run_replays_its_completed_calls(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.jsonl"
    env = weft_env(None, tmp_path, WEFT_CATALOG_FILES=CATALOG, WEFT_TEST_OUTBOX=str(outbox))
    first = DevhostProcess(ROOT, tmp_path / "d.sqlite", free_port(), env).start()
    ids = [submit(first, {"mode": "code", "code": f"TAG = 'run{i}'\n" + INLINE, "tools": ["post_slowly", "slow"],
                          "options": {"code_execution": "inline"}})["id"] for i in range(3)]
    # each run has posted twice and waits in slow(): the crash falls between completed calls
    wait_until(lambda: len(_outbox(outbox)) == 6, 60, "two posts per run")
    first.kill()

    second = DevhostProcess(ROOT, tmp_path / "d.sqlite", free_port(), env).start()
    try:
        views = [wait_run(second, run_id, timeout=60) for run_id in ids]
        activities = [_scheduled(second, run_id, "run_code_inline") for run_id in ids]
    finally:
        second.stop()
    assert activities == [1, 1, 1], "the inline activity was delivered again, not scheduled again"
    for i, view in enumerate(views):
        assert view["status"] == "completed", view
        assert view["result"]["output"]["result"] == [f"run{i}-1", f"run{i}-2", f"run{i}-3"]
        assert [s["status"] for s in view["result"]["steps"]] == ["succeeded"] * 4
    assert _outbox(outbox) == Counter(f"run{i}-{k}" for i in range(3) for k in (1, 2, 3)), "a post ran again"
