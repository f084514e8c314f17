"""Windowed plan runs started by the version before ``finish_plan`` (e59eb61) end on this one, over a devhost: one
recorded by that version at the moment its final episode had scheduled ``load_plan_progress`` (the host then killed),
and ones started with that version's input (a ``plan_prepared`` without ``finish_plan``). Each ends with the result
the same plan gets when this version starts it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devhost.store import Store
from tests.integration.runs.conftest import submit, wait_run, weft_env
from tests.integration.runs.test_plan_windows import chain
from tests.support import ROOT, DevhostProcess, free_port, http

RECORDED = json.loads((Path(__file__).parent / "histories" / "windowed_run_at_load_plan_progress.json").read_text())
"""Recorded with e59eb61 (CHECKPOINT_CALLS 4, WINDOW_STEPS 5): ``chain(14)`` in its last window, the devhost's rows
of the run (instance, history, the queued ``load_plan_progress``) and its payload files."""
OLD_PREPARED: dict[str, Any] = RECORDED["instance"]["input"]["plan_checkpoint"]["prepared"]
DURABLE = "/runtime/webhooks/durabletask"


def restore(state: Path) -> str:
    """The recorded run's rows and payloads in a fresh devhost state: as the killed host left them."""
    inst = RECORDED["instance"]
    store = Store(state / "devhost.sqlite")
    try:
        with store.transaction() as conn:
            conn.execute(
                "INSERT INTO instances(id,name,status,input,output,custom_status,parent_id,parent_task_id,"
                "parent_generation,generation,next_seq,actions,version,created,updated) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (inst["id"], inst["name"], inst["status"], json.dumps(inst["input"]), None,
                 json.dumps(inst["custom_status"]), None, None, None, inst["generation"], inst["next_seq"],
                 json.dumps(inst["actions"]), inst["version"], inst["created"], inst["updated"]))
            store.append_history(conn, inst["id"], 0, [json.dumps(e) for e in RECORDED["history"]])
            for item in RECORDED["work_items"]:  # leased by the killed host: due again at once
                conn.execute("INSERT INTO work_items(instance_id,generation,task_id,name,input,lease_until,dispatches)"
                             " VALUES (?,?,?,?,?,0,1)", (item["instance_id"], item["generation"], item["task_id"],
                                                         item["name"], item["input"]))
    finally:
        store.close()
    for name, text in RECORDED["payloads"].items():
        path = state / "payloads" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(inst["id"])


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    state = tmp_path_factory.mktemp("upgrade")
    restore(state)
    env = weft_env(None, state, WEFT_PLAN_CHECKPOINT_CALLS="4", WEFT_PLAN_WINDOW_STEPS="5",
                   WEFT_PAYLOAD_INLINE_MAX_BYTES="1024")
    proc = DevhostProcess(ROOT, state / "devhost.sqlite", free_port(), env).start()
    yield proc
    proc.stop()


def instance(host: DevhostProcess, instance_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """The orchestration once it ended, with its last generation's history."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, body = http("GET", f"{host.base_url}{DURABLE}/instances/{instance_id}?showHistory=true")
        assert status in (200, 202, 400, 500), body  # Durable answers a failed instance's status with 400
        if body["runtimeStatus"] not in ("Pending", "Running"):
            return dict(body)
        time.sleep(0.05)
    raise TimeoutError(f"{instance_id} did not end in {timeout}s")


def activities(ended: dict[str, Any]) -> list[str]:
    return [e["Name"] for e in ended["historyEvents"] if e.get("EventType") == 4]  # TaskScheduled


def outcome(result: dict[str, Any]) -> tuple[str, list[tuple[Any, ...]], list[Any]]:
    """What a run's result says, without its times."""
    return result["status"], [(s["step_id"], s["status"], s["result"], s["error"]) for s in result["steps"]], \
        result["errors"]


def today(host: DevhostProcess, steps: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    """The result this version gives the plan, started by its trigger (and ended by ``finish_plan``)."""
    view = wait_run(host, submit(host, {"mode": "plan", "options": options, "plan": {"steps": steps}})["id"])
    assert view["result"] is not None, view
    return dict(view["result"])


def test_a_run_the_previous_version_left_at_load_plan_progress_ends_on_this_one(host: DevhostProcess) -> None:
    assert activities({"historyEvents": RECORDED["history"]})[-1] == "load_plan_progress"
    ended = instance(host, RECORDED["instance"]["id"])
    assert ended["runtimeStatus"] == "Completed", ended["output"]
    assert activities(ended)[-2:] == ["load_plan_progress", "load_step_records"]  # as that version went on
    assert outcome(ended["output"]) == outcome(today(host, chain(14)))
    assert ended["output"]["output"] == {"s13": {"expression": "13+1", "result": 14}}


def failing() -> list[dict[str, Any]]:
    steps = chain(16)
    steps[3] = {"id": "s3", "tool": "calculate", "args": {"expression": "1/0"}, "depends_on": ["s2"]}
    return steps + chain(9, "t")


@pytest.mark.parametrize("steps", [pytest.param(chain(14), id="chain"), pytest.param(failing(), id="failure")])
def test_a_run_started_with_the_previous_versions_input_ends_as_it_began(host: DevhostProcess,
                                                                          steps: list[dict[str, Any]]) -> None:
    started = {"mode": "plan", "plan": {"steps": steps}, "plan_prepared": OLD_PREPARED}
    status, _, links = http("POST", f"{host.base_url}{DURABLE}/orchestrators/run", started)
    assert status == 202, links
    ended = instance(host, links["id"])
    assert ended["runtimeStatus"] == "Completed", ended["output"]
    assert "load_plan_progress" in activities(ended) and "finish_plan" not in activities(ended)
    ours = today(host, steps)
    assert outcome(ended["output"]) == outcome(ours)
