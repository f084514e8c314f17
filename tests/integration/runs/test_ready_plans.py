"""Plans over HTTP on a devhost: each step starts when its own inputs are ready (not when its level is done), a call
awaiting approval holds nothing else back, and a long chain goes on in ``continue_as_new`` generations with its
results, ``$ref``s (offloaded ones by reference) and run view intact."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from shared.payloads import ref_of_run
from tests.integration.runs.conftest import deny_after_waiting, steps_by_id, submit, wait_run, weft_env
from tests.support import ROOT, DevhostProcess, free_port, history, http, wait_until

CHECKPOINT = 4
FAN_OUT = 3


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    state = tmp_path_factory.mktemp("ready")
    env = weft_env(None, state, WEFT_CATALOG_FILES=str(ROOT / "tests" / "fakes" / "outbox_catalog.json"),
                   WEFT_TEST_OUTBOX=str(state / "outbox.jsonl"), WEFT_PLAN_CHECKPOINT_CALLS=str(CHECKPOINT),
                   WEFT_PAYLOAD_INLINE_MAX_BYTES="1024", WEFT_MAX_FAN_OUT=str(FAN_OUT))
    proc = DevhostProcess(ROOT, state / "devhost.sqlite", free_port(), env).start()
    yield proc
    proc.stop()


def at(step: dict[str, Any], key: str) -> datetime:
    return datetime.fromisoformat(step[key])


def test_a_chain_beside_a_slow_step_does_not_wait_for_it(host: DevhostProcess) -> None:
    steps = [{"id": "c1", "tool": "slow", "args": {"delay_ms": 100}},
             {"id": "c2", "tool": "slow", "args": {"delay_ms": 100}, "depends_on": ["c1"]},
             {"id": "c3", "tool": "slow", "args": {"delay_ms": 100}, "depends_on": ["c2"]},
             {"id": "long", "tool": "slow", "args": {"delay_ms": 1500}},
             {"id": "join", "tool": "calculate", "args": {"expression": "1+1"}, "depends_on": ["c3", "long"]}]
    view = wait_run(host, submit(host, {"mode": "plan", "plan": {"steps": steps}})["id"])
    assert view["status"] == "completed", view["errors"]
    by_id = steps_by_id(view)
    assert at(by_id["c3"], "finished_at") < at(by_id["long"], "finished_at")  # the chain ran while "long" ran
    assert at(by_id["join"], "started_at") >= at(by_id["long"], "finished_at")
    assert view["result"]["elapsed_ms"] < 1500 + 1000  # the slow step's time, not the sum of the levels'


def test_a_call_awaiting_approval_holds_nothing_else_back(host: DevhostProcess) -> None:
    steps = [{"id": "mail", "tool": "send_email", "args": {"to": "a@example.com", "subject": "hi"}},
             {"id": "x1", "tool": "calculate", "args": {"expression": "2+2"}},
             {"id": "x2", "tool": "calculate", "args": {"expression": "3+3"}, "depends_on": ["x1"]},
             {"id": "after", "tool": "calculate", "args": {"expression": "1"}, "depends_on": ["mail", "x2"]}]
    run_id = submit(host, {"mode": "plan", "plan": {"steps": steps}})["id"]

    def awaiting_with_the_rest_done() -> dict[str, Any] | None:
        current = http("GET", f"{host.base_url}/api/runs/{run_id}")[2]
        done = {s["step_id"]: s["status"] for s in current.get("steps") or []}
        ready = current.get("stage") == "awaiting_approval" and done.get("x2") == "succeeded"
        return current if ready else None

    current = wait_until(awaiting_with_the_rest_done, 60, "x1 and x2 done while the email awaits approval")
    assert [c["call_id"] for c in current["awaiting_approval"]["calls"]] == ["mail"]
    status, _, _ = http("POST", f"{host.base_url}/api/runs/{run_id}/approve",
                        {"approved": True, "call_ids": ["mail"]})
    assert status == 202
    view = wait_run(host, run_id)
    assert view["status"] == "completed", view["errors"]
    assert steps_by_id(view)["after"]["status"] == "succeeded"


def test_a_denied_call_stops_the_run_and_skips_the_rest(host: DevhostProcess) -> None:
    steps = [{"id": "mail", "tool": "send_email", "args": {"to": "a@example.com", "subject": "no"}},
             {"id": "other", "tool": "send_email", "args": {"to": "b@example.com", "subject": "later"}},
             {"id": "slow", "tool": "slow", "args": {"delay_ms": 300}},
             {"id": "next", "tool": "calculate", "args": {"expression": "1"}, "depends_on": ["slow", "mail"]}]
    view = deny_after_waiting(host, steps, awaiting=2, denied=["mail"])  # "other" is not waited for: the run stops
    assert view["status"] == "failed" and view["errors"][0]["code"] == "approval_denied"
    by_id = steps_by_id(view)
    assert by_id["mail"]["status"] == "failed" and by_id["next"]["status"] == "skipped"
    assert by_id["other"]["status"] == "skipped" and by_id["slow"]["status"] == "succeeded"


def test_a_long_chain_continues_as_new_with_results_and_refs_intact(host: DevhostProcess) -> None:
    steps: list[dict[str, Any]] = [{"id": "big", "tool": "big_text", "args": {"size_bytes": 5000}},
                                   {"id": "s0", "tool": "calculate", "args": {"expression": "1"}}]
    steps += [{"id": f"s{i}", "tool": "calculate", "args": {"expression": f"{i}+1"}, "depends_on": [f"s{i - 1}"]}
              for i in range(1, 14)]
    steps += [{"id": "hash", "tool": "hash_text", "args": {"text": {"$ref": "s13.expression"}}},
              {"id": "stats", "tool": "text_statistics", "args": {"text": {"$ref": "big"}}, "depends_on": ["hash"]}]
    started = time.monotonic()
    run_id = submit(host, {"mode": "plan", "plan": {"steps": steps}})["id"]
    view = wait_run(host, run_id)
    assert view["status"] == "completed", view["errors"]
    assert view["id"] == run_id and time.monotonic() - started < 60
    by_id = steps_by_id(view)
    assert len(by_id) == len(steps) and all(s["status"] == "succeeded" for s in by_id.values())
    assert set(by_id["big"]["result"]) == {"blob_ref", "size_bytes", "preview"}  # offloaded: a reference
    assert by_id["stats"]["result"]["characters"] == 5000  # resolved from storage, generations later
    assert view["result"]["output"]["stats"]["characters"] == 5000
    assert view["progress"]["done"] == len(steps) and view["progress"]["total"] == len(steps)
    events = history(host.base_url, run_id)
    scheduled = [e for e in events if e.get("EventType") == 4]
    assert 0 < len(scheduled) <= CHECKPOINT  # only the last generation's calls are in the history
    _, _, instance = http("GET", f"{host.base_url}/runtime/webhooks/durabletask/instances/{run_id}?showInput=true")
    current = instance["input"]
    carried = (json.loads(current) if isinstance(current, str) else current)["plan_checkpoint"]["state"]
    # The generation's input carries statuses, not records: those wait in the run's payload storage
    assert carried["records"] == {} and len(carried["statuses"]) == len(steps) - len(scheduled) + 1
    assert carried["archives"] and all(ref_of_run(ref, run_id) for ref in carried["archives"])


def test_a_batch_wider_than_the_fan_out_runs_in_sub_orchestrations(host: DevhostProcess) -> None:
    steps: list[dict[str, Any]] = [{"id": f"w{i}", "tool": "calculate", "args": {"expression": f"{i}*2"}}
                                   for i in range(8)]
    steps[5]["args"]["expression"] = "1/0"
    steps += [{"id": "sum", "tool": "calculate", "args": {"expression": "1+1"}, "depends_on": ["w0", "w7"]},
              {"id": "after-bad", "tool": "calculate", "args": {"expression": "1"}, "depends_on": ["w5"]}]
    run_id = submit(host, {"mode": "plan", "plan": {"steps": steps}})["id"]
    view = wait_run(host, run_id)
    by_id = steps_by_id(view)
    assert view["status"] == "completed_with_errors"
    assert [by_id[f"w{i}"]["result"]["result"] for i in (0, 1, 7)] == [0, 2, 14]
    assert by_id["w5"]["status"] == "failed" and by_id["after-bad"]["status"] == "skipped"
    assert by_id["sum"]["status"] == "succeeded"
    slices = [http("GET", f"{host.base_url}/runtime/webhooks/durabletask/instances/{run_id}:steps0.0.{i}")[2]
              for i in range(4)]
    assert [s.get("runtimeStatus") for s in slices[:3]] == ["Completed"] * 3  # 8 calls in slices of 3
    assert slices[3].get("runtimeStatus") is None


def test_a_plan_run_starts_with_its_tools_prepared_by_the_trigger(host: DevhostProcess) -> None:
    steps = [{"id": "a", "tool": "calculate", "args": {"expression": "2*3"}}]
    run_id = submit(host, {"mode": "plan", "plan": {"steps": steps}})["id"]
    assert wait_run(host, run_id)["status"] == "completed"
    scheduled = [e.get("Name") for e in history(host.base_url, run_id) if e.get("EventType") == 4]
    assert scheduled == ["call_tool"]  # no prepare_plan activity: the specs came with the input
    _, _, instance = http("GET", f"{host.base_url}/runtime/webhooks/durabletask/instances/{run_id}?showInput=true")
    started = instance["input"] if isinstance(instance["input"], dict) else json.loads(instance["input"])
    assert set(started["plan_prepared"]["specs"]) == {"calculate"}
