"""kill -9 the devhost with plan runs in flight; restart on the same state: every run completes, writes apply once."""

from __future__ import annotations

from shared.demo_tools.notes import NoteStore
from tests.integration.runs.conftest import ends_after_restart, steps_by_id, submit, weft_env
from tests.support import ROOT, TASK_SCHEDULED, DevhostProcess, free_port, history, http, wait_until

RUNS = 20


def _tool_calls_scheduled(host: DevhostProcess, run_id: str) -> int:
    return sum(e["EventType"] == TASK_SCHEDULED and e["Name"] == "call_tool" for e in history(host.base_url, run_id))


def test_plan_runs_survive_kill_9(tmp_path) -> None:
    env = weft_env(None, tmp_path)
    first = DevhostProcess(ROOT, tmp_path / "devhost.sqlite", free_port(), env).start()
    ids = []
    for i in range(RUNS):
        steps = [
            {"id": "wait", "tool": "slow", "args": {"delay_ms": 6000}},
            {"id": "also", "tool": "slow", "args": {"delay_ms": 5000}},
            {"id": "write", "tool": "note_put", "args": {"key": f"crash-{i}", "value": {"i": i}},
             "depends_on": ["wait", "also"]},
            {"id": "read", "tool": "note_get", "args": {"key": f"crash-{i}"}, "depends_on": ["write"]},
        ]
        ids.append(submit(first, {"mode": "plan", "plan": {"steps": steps}})["id"])
    # every run has handed out its two slow tool calls (5 s and 6 s: long enough that none finishes while twenty runs
    # are submitted and dispatched on a loaded machine)
    wait_until(lambda: all(_tool_calls_scheduled(first, i) == 2 for i in ids), 30, "two tool calls in flight per run")
    statuses = [http("GET", f"{first.base_url}/api/runs/{i}")[2]["status"] for i in ids]
    assert all(s in ("pending", "running") for s in statuses), statuses
    first.kill()

    views = ends_after_restart(first, env, ids, timeout=60)
    assert [v["status"] for v in views] == ["completed"] * RUNS
    notes = NoteStore(tmp_path / "notes.sqlite")
    for i, (run_id, view) in enumerate(zip(ids, views, strict=True)):
        assert steps_by_id(view)["read"]["result"]["value"] == {"i": i}
        applications = notes.applications(f"{run_id}:write")
        assert applications.applied == 1 and applications.deliveries >= 1


def test_long_plans_in_windows_survive_kill_9_between_and_within_generations(tmp_path) -> None:
    env = weft_env(None, tmp_path, WEFT_PLAN_CHECKPOINT_CALLS="3", WEFT_PLAN_WINDOW_STEPS="4")
    first = DevhostProcess(ROOT, tmp_path / "devhost.sqlite", free_port(), env).start()
    length = 30
    ids = []
    for i in range(10):
        steps = [{"id": "s0", "tool": "calculate", "args": {"expression": "0"}}]
        steps += [{"id": f"s{k}", "tool": "slow", "args": {"delay_ms": 30}, "depends_on": [f"s{k - 1}"]}
                  for k in range(1, length)]
        steps += [{"id": "write", "tool": "note_put", "args": {"key": f"window-{i}", "value": {"i": i}},
                   "depends_on": [f"s{length - 1}"]},
                  {"id": "read", "tool": "note_get", "args": {"key": f"window-{i}"}, "depends_on": ["write"]}]
        ids.append(submit(first, {"mode": "plan", "plan": {"steps": steps}})["id"])

    def done() -> int:
        return sum((http("GET", f"{first.base_url}/api/runs/{i}")[2].get("progress") or {}).get("done", 0)
                   for i in ids)

    wait_until(lambda: done() >= 60, 60, "the runs several generations in")  # 10 runs x 32 steps in all
    first.kill()
    views = ends_after_restart(first, env, ids, timeout=90)
    assert [v["status"] for v in views] == ["completed"] * len(ids)
    notes = NoteStore(tmp_path / "notes.sqlite")
    for i, (run_id, view) in enumerate(zip(ids, views, strict=True)):
        by_id = steps_by_id(view)
        assert len(by_id) == length + 2 and by_id["read"]["result"]["value"] == {"i": i}
        assert view["progress"]["done"] == view["progress"]["total"] == length + 2
        assert notes.applications(f"{run_id}:write").applied == 1
