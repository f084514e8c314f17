"""Long plans over HTTP on a devhost, in windows: each continued generation's input carries a bounded part of the plan
(the whole plan and the run's progress wait in its payload storage), and the run's view, results, offloaded
``$ref``s, skips, approvals and denials come out as they would for a whole plan."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from shared.payloads import ref_of_run
from tests.integration.runs.conftest import deny_after_waiting, steps_by_id, submit, wait_run, weft_env
from tests.support import ROOT, DevhostProcess, free_port, http, wait_until

CHECKPOINT = 4
WINDOW = 5


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    state = tmp_path_factory.mktemp("windows")
    env = weft_env(None, state, WEFT_CATALOG_FILES=str(ROOT / "tests" / "fakes" / "outbox_catalog.json"),
                   WEFT_TEST_OUTBOX=str(state / "outbox.jsonl"), WEFT_PLAN_CHECKPOINT_CALLS=str(CHECKPOINT),
                   WEFT_PLAN_WINDOW_STEPS=str(WINDOW), WEFT_PAYLOAD_INLINE_MAX_BYTES="1024")
    proc = DevhostProcess(ROOT, state / "devhost.sqlite", free_port(), env).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def whole_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    """The same settings without windows: every generation carries the whole plan."""
    state = tmp_path_factory.mktemp("whole")
    env = weft_env(None, state, WEFT_CATALOG_FILES=str(ROOT / "tests" / "fakes" / "outbox_catalog.json"),
                   WEFT_TEST_OUTBOX=str(state / "outbox.jsonl"), WEFT_PLAN_CHECKPOINT_CALLS=str(CHECKPOINT),
                   WEFT_PLAN_WINDOW_STEPS="0", WEFT_PAYLOAD_INLINE_MAX_BYTES="1024")
    proc = DevhostProcess(ROOT, state / "devhost.sqlite", free_port(), env).start()
    yield proc
    proc.stop()


def chain(n: int, prefix: str = "s") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}0", "tool": "calculate", "args": {"expression": "1"}}] + [
        {"id": f"{prefix}{i}", "tool": "calculate", "args": {"expression": f"{i}+1"},
         "depends_on": [f"{prefix}{i - 1}"]} for i in range(1, n)]


def carried_input(host: DevhostProcess, run_id: str) -> dict[str, Any]:
    _, _, instance = http("GET", f"{host.base_url}/runtime/webhooks/durabletask/instances/{run_id}?showInput=true")
    current = instance["input"]
    return json.loads(current) if isinstance(current, str) else current


def test_a_long_chain_carries_a_window_not_the_plan(host: DevhostProcess) -> None:
    steps: list[dict[str, Any]] = [{"id": "big", "tool": "big_text", "args": {"size_bytes": 5000}}, *chain(30)]
    steps += [{"id": "hash", "tool": "hash_text", "args": {"text": {"$ref": "s29.expression"}}},
              {"id": "stats", "tool": "text_statistics", "args": {"text": {"$ref": "big"}}, "depends_on": ["hash"]}]
    run_id = submit(host, {"mode": "plan", "plan": {"steps": steps}})["id"]
    seen: list[tuple[int, int]] = []

    def windowed() -> dict[str, Any] | None:
        current = http("GET", f"{host.base_url}/api/runs/{run_id}")[2]
        progress = current.get("progress") or {}
        if progress:
            seen.append((progress["done"], progress["total"]))
        carried = carried_input(host, run_id)
        return carried if "window" in carried.get("plan_checkpoint", {}) else None

    carried = wait_until(windowed, 60, "a generation that carries a window")
    assert len(carried["plan"]["steps"]) <= WINDOW + 2  # the window and the finished steps it reads
    assert all(ref_of_run(ref, run_id) for ref in carried["plan_checkpoint"]["window"].values())
    view = wait_run(host, run_id)
    assert view["status"] == "completed", view["errors"]
    by_id = steps_by_id(view)
    assert [s["step_id"] for s in view["result"]["steps"]] == [s["id"] for s in steps]  # the whole plan, in order
    assert all(s["status"] == "succeeded" for s in by_id.values())
    assert by_id["stats"]["result"]["characters"] == 5000  # the offloaded result, resolved 8 windows later
    assert len(by_id["hash"]["result"]["hex"]) == 64
    assert view["result"]["output"]["stats"]["characters"] == 5000
    assert view["progress"]["done"] == len(steps) == view["progress"]["total"]
    assert seen and all(total == len(steps) for _, total in seen)  # every window shows the whole plan's count


def test_a_failure_skips_its_dependents_beyond_the_window(host: DevhostProcess) -> None:
    steps = chain(20)
    steps[3] = {"id": "s3", "tool": "calculate", "args": {"expression": "1/0"}, "depends_on": ["s2"]}
    steps += chain(12, "t")
    run_id = submit(host, {"mode": "plan", "plan": {"steps": steps}})["id"]
    view = wait_run(host, run_id)
    assert view["status"] == "completed_with_errors"
    by_id = steps_by_id(view)
    assert by_id["s3"]["status"] == "failed"
    assert [by_id[f"s{i}"]["status"] for i in range(4, 20)] == ["skipped"] * 16
    assert all(by_id[f"t{i}"]["status"] == "succeeded" for i in range(12))
    assert [e["field"] for e in view["errors"]] == ["plan.steps[3]"]


def with_email(decided_after: str) -> list[dict[str, Any]]:
    steps = chain(14)
    steps.append({"id": "mail", "tool": "send_email", "args": {"to": "a@example.com", "subject": "hi"},
                  "depends_on": [decided_after]})
    steps.append({"id": "after", "tool": "calculate", "args": {"expression": "1"}, "depends_on": ["mail", "s13"]})
    return steps


def awaiting_in_a_window(host: DevhostProcess, run_id: str) -> None:
    def awaiting() -> dict[str, Any] | None:
        current = http("GET", f"{host.base_url}/api/runs/{run_id}")[2]
        return current if current.get("stage") == "awaiting_approval" else None

    current = wait_until(awaiting, 60, "the email awaits approval")
    assert [c["call_id"] for c in current["awaiting_approval"]["calls"]] == ["mail"]
    assert "window" in carried_input(host, run_id)["plan_checkpoint"]


def test_an_approval_in_a_later_window_is_asked_for_and_applied(host: DevhostProcess) -> None:
    run_id = submit(host, {"mode": "plan", "plan": {"steps": with_email("s12")}})["id"]
    awaiting_in_a_window(host, run_id)
    assert http("POST", f"{host.base_url}/api/runs/{run_id}/approve", {"approved": True})[0] == 202
    view = wait_run(host, run_id)
    assert view["status"] == "completed", view["errors"]
    assert steps_by_id(view)["after"]["status"] == "succeeded" and len(view["result"]["steps"]) == 16


def test_a_denial_in_a_window_skips_every_step_not_run_in_the_whole_plan(host: DevhostProcess) -> None:
    run_id = submit(host, {"mode": "plan", "plan": {"steps": with_email("s5")}})["id"]
    awaiting_in_a_window(host, run_id)
    denial = {"approved": False, "reason": "no", "call_ids": ["mail"]}
    assert http("POST", f"{host.base_url}/api/runs/{run_id}/approve", denial)[0] == 202
    view = wait_run(host, run_id)
    assert view["status"] == "failed" and view["errors"][0]["code"] == "approval_denied"
    by_id = steps_by_id(view)
    assert len(by_id) == 16 and by_id["mail"]["status"] == "failed" and by_id["after"]["status"] == "skipped"
    assert by_id["s13"]["status"] == "skipped"  # outside the window when the run stopped: skipped all the same
    assert all(s["status"] in ("succeeded", "failed", "skipped") for s in by_id.values())


def test_a_deadline_in_a_window_skips_the_steps_outside_it_too(host: DevhostProcess) -> None:
    steps = [{"id": "s0", "tool": "calculate", "args": {"expression": "1"}}]
    steps += [{"id": f"s{i}", "tool": "calculate", "args": {"expression": f"{i}+1"}, "depends_on": [f"s{i - 1}"]}
              for i in range(1, 12)]
    steps += [{"id": "long", "tool": "slow", "args": {"delay_ms": 20000}, "depends_on": ["s11"]}]
    steps += [{"id": f"t{i}", "tool": "calculate", "args": {"expression": "1"}, "depends_on": ["long"]}
              for i in range(10)]
    run_id = submit(host, {"mode": "plan", "options": {"timeout_s": 3}, "plan": {"steps": steps}})["id"]
    view = wait_run(host, run_id, timeout=30)
    by_id = steps_by_id(view)
    assert view["status"] == "completed_with_errors" and len(by_id) == len(steps)  # as for a whole plan
    assert all(by_id[f"s{i}"]["status"] == "succeeded" for i in range(12))
    assert by_id["long"]["status"] == "failed" and by_id["long"]["error"]["code"] == "timed_out"
    assert by_id["t9"]["error"]["message"] == "not run: step 'long' failed"  # beyond its window: as in a whole plan
    assert [by_id[f"t{i}"]["status"] for i in range(10)] == ["skipped"] * 10  # most never reached a window



def two_emails(before: list[dict[str, Any]]) -> list[dict[str, Any]]:
    last = before[-1]["id"]
    return [*before, {"id": "mail", "tool": "send_email", "args": {"to": "a@example.com", "subject": "no"},
                      "depends_on": [last]},
            {"id": "other", "tool": "send_email", "args": {"to": "b@example.com", "subject": "later"},
             "depends_on": [last]},
            {"id": "after", "tool": "calculate", "args": {"expression": "1"}, "depends_on": ["mail", "other"]},
            {"id": "then", "tool": "calculate", "args": {"expression": "2"}, "depends_on": ["other"]}]


def deny_mail(host: DevhostProcess, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return deny_after_waiting(host, steps, awaiting=2, denied=["mail"])


def test_a_denial_in_a_window_reports_the_call_still_awaiting_as_a_whole_plan_does(host: DevhostProcess) -> None:
    whole = deny_mail(host, two_emails(chain(1)))  # as long as a window: runs whole
    windowed = deny_mail(host, two_emails(chain(10)))
    assert "window" not in carried_input(host, whole["id"]).get("plan_checkpoint", {})

    def records(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
        by_id = steps_by_id(view)
        return {step_id: {**{k: v for k, v in by_id[step_id].items() if k not in ("started_at", "finished_at")},
                          "started": by_id[step_id]["started_at"] is not None}
                for step_id in ("mail", "other", "after", "then")}

    assert windowed["status"] == whole["status"] == "failed"
    assert records(windowed) == records(whole)
    other = records(windowed)["other"]
    assert other["status"] == "skipped" and other["started"] and other["args_hash"]  # it was awaiting approval


def test_a_denial_in_a_window_reports_every_step_as_the_whole_plan_does(
        host: DevhostProcess, whole_host: DevhostProcess) -> None:
    """The window with the emails holds few of their dependents: the others are skipped by the final fold."""
    steps = two_emails(chain(8))[:-2]
    steps += [{"id": f"k{i}", "tool": "calculate", "args": {"expression": f"{i}"}, "depends_on": ["mail"]}
              for i in range(6)]
    steps += [{"id": "then", "tool": "calculate", "args": {"expression": "2"}, "depends_on": ["other"]},
              {"id": "last", "tool": "calculate", "args": {"expression": "3"}, "depends_on": ["then", "k5"]}]
    whole, windowed = deny_mail(whole_host, steps), deny_mail(host, steps)
    assert "window" not in carried_input(whole_host, whole["id"]).get("plan_checkpoint", {})

    def reported(view: dict[str, Any]) -> list[tuple[str, str, dict[str, Any] | None]]:
        return [(s["step_id"], s["status"], s.get("error")) for s in view["result"]["steps"]]

    assert windowed["status"] == whole["status"] == "failed" and windowed["errors"] == whole["errors"]
    assert reported(windowed) == reported(whole)
    by_id = steps_by_id(windowed)
    assert by_id["k5"]["error"]["message"] == "not run: step 'mail' failed"  # beyond the emails' window
    assert by_id["then"]["error"]["message"] == "not run: step 'other' skipped"
    assert by_id["last"]["error"]["message"] == "not run: step 'k5' skipped"  # the first of its causes
