"""Plan mode end to end on the devhost: dependencies, refs, retries, failures, breaker, idempotency, bad input."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest

from shared.catalog.breaker import BreakerRecord, BreakerState
from tests.integration.runs.conftest import breaker_store, run_plan, steps_by_id, submit, wait_run
from tests.support import ROOT, DevhostProcess, http


def test_three_level_plan_with_fan_out_and_refs(weft: DevhostProcess) -> None:
    request = json.loads((ROOT / "examples" / "demo_plan.json").read_text())
    view = wait_run(weft, submit(weft, request)["id"])
    assert view["status"] == "completed", view["errors"]
    steps = steps_by_id(view)
    assert len(steps) == 11 and all(s["status"] == "succeeded" for s in steps.values())
    assert steps["distance_m"]["result"]["result"] == pytest.approx(42164.8128)
    assert steps["arrival"]["result"]["result"]["datetime"] == "2026-11-24T13:00:00+09:00"
    assert steps["read_back"]["result"]["value"]["km"] == pytest.approx(42.1648128)
    assert set(view["result"]["output"]) == {"table", "read_back", "checksum"}
    assert view["progress"]["done"] == view["progress"]["total"] == 11
    started = {sid: s["started_at"] for sid, s in steps.items()}
    assert started["distance"] == started["price"] == started["start"], "a level is scheduled together"
    assert started["distance_m"] > started["distance"]


def test_flaky_tool_recovered_by_retries(weft: DevhostProcess) -> None:
    view = run_plan(weft, [{"id": "f", "tool": "flaky", "args": {"fail_first": 2, "key": "retry-me"}}])
    step = steps_by_id(view)["f"]
    assert view["status"] == "completed"
    assert step["status"] == "succeeded" and step["attempts"] == 3
    assert step["result"]["attempt"] == 3


def test_failing_tool_skips_its_dependents(weft: DevhostProcess) -> None:
    view = run_plan(weft, [
        {"id": "bad", "tool": "fail_always", "args": {"message": "no such city"}},
        {"id": "after", "tool": "calculate", "args": {"expression": "1+1"}, "depends_on": ["bad"]},
        {"id": "later", "tool": "calculate", "args": {"expression": "2+2"}, "depends_on": ["after"]},
        {"id": "other", "tool": "calculate", "args": {"expression": "3+3"}},
    ])
    steps = steps_by_id(view)
    assert view["status"] == "completed_with_errors"
    assert steps["bad"]["status"] == "failed" and steps["bad"]["attempts"] == 1, "not retryable: tried once"
    assert "no such city" in steps["bad"]["error"]["message"]
    assert steps["after"]["status"] == steps["later"]["status"] == "skipped"
    assert steps["other"]["status"] == "succeeded"
    assert [e["field"] for e in view["errors"]] == ["plan.steps[0]"]


def test_retryable_failure_uses_every_attempt_then_fails(weft: DevhostProcess) -> None:
    view = run_plan(weft, [{"id": "x", "tool": "fail_always", "args": {"message": "upstream down", "retryable": True}}],
                    options={"fail_fast": True})
    step = steps_by_id(view)["x"]
    assert step["status"] == "failed" and step["attempts"] == 3
    assert step["error"]["code"] == "tool_failed" and step["error"]["retryable"] is True
    assert view["status"] == "failed"


COOLDOWN_S = 2.0
"""WEFT_BREAKER_COOLDOWN_S of the runs' devhost (tests/integration/runs/conftest.py)."""


def trip_the_flaky_circuit(weft: DevhostProcess, key: str) -> BreakerRecord:
    """Three failed attempts of one step (WEFT_BREAKER_FAILURE_THRESHOLD=3) open ``flaky``'s circuit."""
    opened = run_plan(weft, [{"id": "trip", "tool": "flaky", "args": {"fail_first": 5, "key": key}}])
    assert steps_by_id(opened)["trip"]["status"] == "failed"
    record = breaker_store(weft).get("flaky")
    assert record.state == BreakerState.OPEN
    return record


def test_a_step_that_meets_an_open_circuit_waits_for_it_and_succeeds(weft: DevhostProcess) -> None:
    opened = trip_the_flaky_circuit(weft, "trip-then-wait")
    # Durable's own retries (0.5 s, then 1 s) would spend all three attempts inside the 2 s cool-down.
    view = run_plan(weft, [{"id": "b", "tool": "flaky", "args": {"failure_rate": 0, "key": "while-open"}}])
    step = steps_by_id(view)["b"]
    assert view["status"] == "completed", view["errors"]
    assert step["status"] == "succeeded" and step["attempts"] == 2, "rejected once, then the trial call"
    finished = datetime.fromisoformat(step["finished_at"].replace("Z", "+00:00")).timestamp()
    assert finished >= opened.opened_at + COOLDOWN_S - 0.01, "it waited on a durable timer for the cool-down"
    assert breaker_store(weft).get("flaky").state == BreakerState.CLOSED


def test_waiting_for_a_circuit_is_bounded_by_the_steps_attempts(weft: DevhostProcess) -> None:
    trip_the_flaky_circuit(weft, "trip-then-give-up")
    # Attempt 1 meets the open circuit; after the cool-down attempt 2 is the trial, fails and reopens it; attempt 3,
    # Durable's retry 0.5 s later, meets it open again and is the last of the tool's three.
    view = run_plan(weft, [{"id": "c", "tool": "flaky", "args": {"fail_first": 5, "key": "still-broken"}}])
    step = steps_by_id(view)["c"]
    assert step["status"] == "failed" and step["attempts"] == 3
    assert step["error"]["code"] == "circuit_open" and step["error"]["retryable"] is True


def test_idempotency_key_returns_the_same_run(weft: DevhostProcess) -> None:
    body = {"mode": "plan", "plan": {"steps": [{"id": "n", "tool": "note_put",
                                                 "args": {"key": "idem", "value": 1}}]}}
    first = http("POST", weft.base_url + "/api/runs", body, headers={"Idempotency-Key": "order-42"})
    second = http("POST", weft.base_url + "/api/runs", body, headers={"Idempotency-Key": "order-42"})
    assert first[0] == 202 and second[0] == 200
    assert first[2]["id"] == second[2]["id"] == "run-order-42"
    assert second[1].get("Idempotent-Replayed") == "true"
    view = wait_run(weft, first[2]["id"])
    assert steps_by_id(view)["n"]["result"]["applied"] is True
    listed = http("GET", weft.base_url + "/api/runs?limit=100")[2]["runs"]
    assert [r["id"] for r in listed].count("run-order-42") == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"mode": "plan", "plan": {"steps": [{"id": "a", "tool": "nope", "args": {}}]}},
                     "plan.steps[0].tool", id="unknown-tool"),
        pytest.param({"mode": "plan", "plan": {"steps": [{"id": "a", "tool": "calculate", "args": {"expr": "1"}}]}},
                     "plan.steps[0].args.expr", id="bad-args"),
        pytest.param({"mode": "plan", "plan": {"steps": [
            {"id": "a", "tool": "calculate", "args": {"expression": "1"}, "depends_on": ["b"]},
            {"id": "b", "tool": "calculate", "args": {"expression": "1"}, "depends_on": ["a"]}]}},
            "plan.steps[0].depends_on[0]", id="cycle"),
        pytest.param({"mode": "plan", "plan": {"steps": [
            {"id": "a", "tool": "convert_units", "args": {"value": {"$ref": "zz.result"}, "from_unit": "m",
                                                          "to_unit": "km"}}]}},
            "plan.steps[0].args.value", id="dangling-ref"),
        pytest.param({"mode": "plan", "plan": {"steps": []}}, "plan.steps", id="no-steps"),
        pytest.param({"mode": "plan"}, "plan", id="missing-plan"),
        pytest.param({"mode": "plan", "plan": {"steps": [{"id": "a.b", "tool": "calculate", "args": {}}]}},
                     "plan.steps[0].id", id="bad-step-id"),
        pytest.param({"mode": "unknown"}, "mode", id="bad-mode"),
        pytest.param({"plan": {}}, "mode", id="missing-mode"),
    ],
)
def test_bad_plans_are_400_naming_the_field(weft: DevhostProcess, body: dict, field: str) -> None:
    status, _, reply = http("POST", weft.base_url + "/api/runs", body)
    assert status == 400, reply
    assert reply["field"] == field
    assert reply["code"] in ("invalid_request", "plan_invalid") and reply["message"]


@pytest.mark.parametrize("raw", [pytest.param(b"", id="empty"), pytest.param(b"{nope", id="not-json"),
                                 pytest.param(b"[1, 2]", id="not-an-object")])
def test_unparseable_bodies_are_400(weft: DevhostProcess, raw: bytes) -> None:
    status, _, reply = http("POST", weft.base_url + "/api/runs", raw)
    assert status == 400 and reply["code"] == "invalid_request" and reply["field"]


def test_large_results_travel_by_reference(weft: DevhostProcess) -> None:
    items = [f"item-{i:05d}-" + "x" * 40 for i in range(1000)]
    view = run_plan(weft, [
        {"id": "big", "tool": "sort_list", "args": {"items": items, "descending": True}},
        {"id": "pick", "tool": "json_query", "args": {"data": {"$ref": "big"}, "path": "items[0]"}},
    ])
    steps = steps_by_id(view)
    assert view["status"] == "completed", view["errors"]
    assert steps["big"]["result"]["blob_ref"].startswith("blob:weft-payloads/")
    assert steps["big"]["result"]["size_bytes"] > 40_000
    assert len(json.dumps(steps["big"]["result"])) < 2_000
    assert steps["pick"]["result"]["first"] == items[-1]


def test_cancel_a_running_run(weft: DevhostProcess) -> None:
    run_id = submit(weft, {"mode": "plan", "plan": {"steps": [{"id": "s", "tool": "slow",
                                                               "args": {"delay_ms": 5000}}]}})["id"]
    status, _, reply = http("POST", f"{weft.base_url}/api/runs/{run_id}/cancel")
    assert status == 202, reply
    view = wait_run(weft, run_id, timeout=10)
    assert view["status"] == "canceled"
    assert http("POST", f"{weft.base_url}/api/runs/{run_id}/cancel")[0] == 409
    assert http("POST", f"{weft.base_url}/api/runs/nope/cancel")[0] == 404


def test_run_queries(weft: DevhostProcess) -> None:
    assert http("GET", f"{weft.base_url}/api/runs/does-not-exist")[2]["field"] == "id"
    assert http("GET", f"{weft.base_url}/api/runs?limit=0")[0] == 400
    assert http("GET", f"{weft.base_url}/api/runs?status=weird")[2]["field"] == "status"
    done = http("GET", f"{weft.base_url}/api/runs?status=completed&limit=5")[2]["runs"]
    assert 1 <= len(done) <= 5 and all(r["status"] == "completed" for r in done)


def test_tool_catalog_endpoints(weft: DevhostProcess) -> None:
    listing = http("GET", weft.base_url + "/api/tools")[2]
    assert listing["count"] >= 15 and len(listing["version"]) == 64
    spec = http("GET", weft.base_url + "/api/tools/convert_units")[2]
    assert spec["parameters"]["required"] == ["value", "from_unit", "to_unit"]
    status, _, missing = http("GET", weft.base_url + "/api/tools/nope")
    assert status == 404 and missing["field"] == "name"


def test_max_parallel_bounds_calls_in_flight(weft: DevhostProcess) -> None:
    steps = [{"id": f"s{i}", "tool": "slow", "args": {"delay_ms": 200}} for i in range(6)]
    started = time.perf_counter()
    view = run_plan(weft, steps, options={"max_parallel": 2})
    elapsed = time.perf_counter() - started
    assert view["status"] == "completed"
    assert elapsed >= 0.6, "six 200 ms calls, two at a time, take at least three rounds"
    spans = [(s["started_at"], s["finished_at"]) for s in view["result"]["steps"]]
    assert max(sum(a <= t < b for a, b in spans) for t, _ in spans) == 2  # never more than two in flight


def test_task_mode_without_an_llm_is_503_with_how_to_configure(weft: DevhostProcess) -> None:
    status, _, reply = http("POST", weft.base_url + "/api/runs", {"mode": "task", "task": "what is 2+2?"})
    assert status == 503
    assert reply["code"] == "not_configured" and "AZURE_OPENAI_ENDPOINT" in reply["message"]
    code = http("POST", weft.base_url + "/api/runs", {"mode": "code", "code": "result = 1"})
    assert code[0] == 202, "plan and code modes keep working"
