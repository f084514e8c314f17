"""PlanRun, ready-driven: a step is released when its own dependencies are done, failures skip what needs them at
once, and a checkpoint carries a run into its next generation intact."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from shared.models import ErrorInfo, Plan, RunOptions, RunStatus, StepStatus
from shared.runs.custom_status import STATUS_MAX_CHARS, STATUS_MAX_STEPS, StepSummary
from shared.runs.plan_run import PlanRun
from shared.runs.step_calls import offloaded_ref
from tests.unit.runs.test_plan_run import DIAMOND, SPECS, T0, failed, ok, plan

UNEVEN = plan(
    {"id": "c1", "tool": "echo", "args": {"value": 1}},
    {"id": "c2", "tool": "echo", "args": {"value": {"$ref": "c1.value"}}},
    {"id": "c3", "tool": "echo", "args": {"value": {"$ref": "c2.value"}}},
    {"id": "long", "tool": "echo", "args": {"value": 5}},
    {"id": "join", "tool": "add", "args": {"a": {"$ref": "c3.value"}, "b": {"$ref": "long.value"}}},
)


def ids(calls: list) -> list[str]:
    return [call.call.step_id for call in calls]


def test_a_step_starts_when_its_own_inputs_are_done_not_its_level() -> None:
    run = PlanRun("r1", UNEVEN, SPECS, RunOptions(), T0)
    assert ids(run.take_ready(T0)) == ["c1", "long"]
    assert not run.has_ready
    run.record([ok("c1", {"value": 1})], T0)
    assert ids(run.take_ready(T0)) == ["c2"]  # "long" is still running: c2 does not wait for it
    run.record([ok("c2", {"value": 1})], T0)
    assert [c.call.args for c in run.take_ready(T0)] == [{"value": 1}]
    run.record([ok("c3", {"value": 1})], T0)
    assert run.take_ready(T0) == []  # the join waits for "long"
    run.record([ok("long", {"value": 5})], T0)
    (join,) = run.take_ready(T0)
    assert join.call.args == {"a": 1, "b": 5}
    run.record([ok("join", {"sum": 6})], T0)
    assert run.finished and run.result(T0).status == RunStatus.COMPLETED


def test_take_ready_respects_the_limit_and_keeps_the_rest_ready() -> None:
    wide = plan(*({"id": f"s{i}", "tool": "echo", "args": {}} for i in range(5)))
    run = PlanRun("r2", wide, SPECS, RunOptions(), T0)
    assert ids(run.take_ready(T0, 2)) == ["s0", "s1"]
    assert run.has_ready and run.calls_made == 2
    assert ids(run.take_ready(T0, 10)) == ["s2", "s3", "s4"]


def test_a_failure_skips_what_depends_on_it_at_once() -> None:
    run = PlanRun("r3", UNEVEN, SPECS, RunOptions(), T0)
    run.take_ready(T0)
    run.record([failed("c1")], T0)
    records = {r.step_id: r for r in run.result(T0).steps}
    # c2, c3 and join are skipped now, while "long" still runs
    assert [records[s].status for s in ("c2", "c3", "join")] == [StepStatus.SKIPPED] * 3
    assert "'c1' failed" in records["c2"].error.message and "'c3' skipped" in records["join"].error.message
    assert records["long"].status == StepStatus.RUNNING and not run.finished
    status = run.status_dump(T0)
    assert (status["done"], status["failed"], status["skipped"]) == (4, 1, 3)
    run.record([ok("long", {"value": 5})], T0)
    assert run.finished and run.result(T0).status == RunStatus.COMPLETED_WITH_ERRORS


def test_fail_fast_skips_every_step_not_started() -> None:
    run = PlanRun("r4", UNEVEN, SPECS, RunOptions(fail_fast=True), T0)
    run.take_ready(T0)
    run.record([failed("long")], T0)
    assert run.take_ready(T0) == []
    run.record([ok("c1", {"value": 1})], T0)  # a call in flight still counts
    assert run.take_ready(T0) == [] and run.finished
    result = run.result(T0)
    assert result.status == RunStatus.FAILED
    assert [s.status for s in result.steps] == [StepStatus.SUCCEEDED, StepStatus.SKIPPED, StepStatus.SKIPPED,
                                                StepStatus.FAILED, StepStatus.SKIPPED]


def test_expire_skips_what_has_not_started() -> None:
    run = PlanRun("r5", UNEVEN, SPECS, RunOptions(timeout_s=1), T0)
    run.take_ready(T0)
    run.record([ok("c1", {"value": 1})], T0)
    run.expire(T0 + dt.timedelta(seconds=1))
    assert run.take_ready(T0) == []
    by_id = {r.step_id: r for r in run.result(T0).steps}
    assert "deadline" in by_id["c2"].error.message and by_id["long"].status == StepStatus.RUNNING


STOPPED = [  # "first" awaits approval when "gate" is denied; "then" and "last" wait on it
    {"id": "gate", "tool": "echo", "args": {}},
    {"id": "first", "tool": "echo", "args": {}},
    {"id": "then", "tool": "echo", "args": {}, "depends_on": ["first"]},
    {"id": "last", "tool": "echo", "args": {}, "depends_on": ["then", "gate"]},
    {"id": "beside", "tool": "echo", "args": {}, "depends_on": ["gate"]},
]


@pytest.mark.parametrize("order", [pytest.param([0, 1, 2, 3, 4], id="topological"),
                                   pytest.param([3, 4, 2, 0, 1], id="dependents-listed-first")])
def test_a_stopped_run_skips_each_step_once_for_its_first_cause(order: list[int]) -> None:
    run = PlanRun("r5", plan(*(STOPPED[i] for i in order)), SPECS, RunOptions(), T0)
    run.take_ready(T0)
    run.record([failed("gate", "denied")], T0)
    denial = ErrorInfo(code="approval_denied", message="this call of echo was denied: no")
    result = run.stopped(denial, T0)
    messages = {r.step_id: r.error.message if r.error else None for r in result.steps}
    assert messages == {"gate": "denied", "first": "not run: this call of echo was denied: no",
                        "then": "not run: step 'first' skipped", "last": "not run: step 'gate' failed",
                        "beside": "not run: step 'gate' failed"}
    assert (run.done, *run.counts) == (5, 1, 4)


def test_status_shows_each_step_as_it_finishes() -> None:
    run = PlanRun("r6", DIAMOND, SPECS, RunOptions(), T0)
    run.take_ready(T0)
    assert run.status_dump(T0)["steps"] == [{"step_id": "a", "tool": "add", "status": "running", "attempts": 0,
                                                "latency_ms": 0.0}]
    run.record([ok("a", {"sum": 3}, attempts=2)], T0 + dt.timedelta(seconds=1))
    status = run.status(T0 + dt.timedelta(seconds=1))
    assert status.done == 1 and status.total == 4 and status.elapsed_ms == 1000.0
    assert status.steps is not None and status.steps[0].status == "succeeded" and status.steps[0].attempts == 2


def test_a_checkpoint_carries_results_refs_and_records_into_the_next_generation() -> None:
    chain = Plan.model_validate({"steps": [
        {"id": "a", "tool": "add", "args": {"a": 1, "b": 2}},
        {"id": "big", "tool": "echo", "args": {"value": {"$ref": "a"}}},
        {"id": "b", "tool": "add", "args": {"a": {"$ref": "a.sum"}, "b": 10}},
        {"id": "c", "tool": "echo", "args": {"value": {"$ref": "big.text"}}},
    ]})
    first = PlanRun("r7", chain, SPECS, RunOptions(), T0)
    first.take_ready(T0)
    first.record([ok("a", {"sum": 3})], T0)
    assert ids(first.take_ready(T0)) == ["big", "b"]
    first.record([ok("big", "{...", blob_ref="blob:weft-payloads/r7/big.json"), ok("b", {"sum": 13})], T0)
    state = json.loads(json.dumps(first.checkpoint()))  # it travels as JSON
    assert set(state["results"]) == {"big"}  # only results a step still needs are carried
    later = T0 + dt.timedelta(seconds=3)
    second = PlanRun("r7", chain, SPECS, RunOptions(), T0, state=state)
    assert second.done == 3 and second.calls_made == 0
    (call,) = second.take_ready(later)
    assert call.call.step_id == "c" and call.offloaded == {"big": "blob:weft-payloads/r7/big.json"}
    assert call.call.args == {"value": {"$ref": "big.text"}}  # left for the activity to resolve from storage
    second.record([ok("c", {"value": "t"})], later)
    result = second.result(later)
    assert result.status == RunStatus.COMPLETED and result.elapsed_ms == 3000.0
    assert [s.step_id for s in result.steps] == ["a", "big", "b", "c"]
    assert result.output == {"b": {"sum": 13}, "c": {"value": "t"}}
    assert result.steps[1].result["blob_ref"] == "blob:weft-payloads/r7/big.json"
    assert offloaded_ref(second.results["big"]) == "blob:weft-payloads/r7/big.json"
    assert [s["step_id"] for s in second.status_dump(later)["steps"]] == ["a", "big", "b", "c"]


def test_archived_records_leave_the_checkpoint_and_come_back_for_the_result() -> None:
    chain = Plan.model_validate({"steps": [{"id": f"s{i}", "tool": "add", "args": {"a": i, "b": 1},
                                            **({"depends_on": [f"s{i - 1}"]} if i else {})} for i in range(6)]})
    archive: dict[str, dict] = {}
    state = None
    for generation in range(3):  # two steps per generation, each generation archives what it finished
        run = PlanRun("r9", chain, SPECS, RunOptions(), T0, state=state)
        for _ in range(2):
            (call,) = run.take_ready(T0)
            run.record([ok(call.call.step_id, {"sum": generation})], T0)
        if generation < 2:
            ref = f"file:r9/gen{generation}.json"
            archive[ref] = json.loads(json.dumps(run.unarchived_records()))
            assert set(archive[ref]) == {f"s{2 * generation}", f"s{2 * generation + 1}"}  # only its own steps
            state = json.loads(json.dumps(run.checkpoint(ref)))
            assert state["records"] == {} and state["archives"] == list(archive)
            assert set(state["statuses"]) == {f"s{i}" for i in range(2 * generation + 2)}
    assert run.finished and run.done == 6
    with pytest.raises(RuntimeError):
        run.result(T0)  # the records of s0-s3 are archived: a result without them would list them as pending
    run.restore_archived({k: v for ref in run.archives for k, v in archive[ref].items()})
    result = run.result(T0)
    assert result.status == RunStatus.COMPLETED
    assert [(s.step_id, s.status) for s in result.steps] == [(f"s{i}", StepStatus.SUCCEEDED) for i in range(6)]


def test_a_version_1_checkpoint_with_every_record_inline_still_continues() -> None:
    first = PlanRun("r10", DIAMOND, SPECS, RunOptions(), T0)
    first.take_ready(T0)
    first.record([ok("a", {"sum": 3})], T0)
    state = json.loads(json.dumps(first.checkpoint()))
    v1 = {"v": 1, "records": state["records"], "failed": False, "results": state["results"], "recent": state["recent"]}
    second = PlanRun("r10", DIAMOND, SPECS, RunOptions(), T0, state=v1)
    assert second.done == 1 and ids(second.take_ready(T0)) == ["b", "c"]


def test_status_summaries_are_those_of_step_summary() -> None:
    run = PlanRun("r8", DIAMOND, SPECS, RunOptions(), T0)
    run.take_ready(T0)
    run.record([ok("a", {"sum": 3}, attempts=2)], T0)
    run.take_ready(T0)
    run.record([failed("b")], T0)
    expected = {s: StepSummary.of(run.records[s]).model_dump(mode="json", exclude_none=True) for s in "abcd"}
    assert run.status_dump(T0)["steps"] == [expected[s] for s in "acbd"]  # the latest change last


@pytest.mark.parametrize("id_chars", [8, 40, 64])
def test_the_status_of_a_long_plan_fits_durables_limit_whatever_its_step_ids(id_chars: int) -> None:
    steps = [{"id": "s" + str(i).rjust(id_chars - 1, "0"), "tool": "echo", "args": {"value": i}} for i in range(80)]
    run = PlanRun("r1", Plan.model_validate({"steps": steps}), SPECS, RunOptions(), T0)
    for call in run.take_ready(T0):
        run.record([failed(call.call.step_id)], T0 + dt.timedelta(seconds=1))
    dumped = run.status_dump(T0 + dt.timedelta(seconds=1))
    assert len(json.dumps(dumped)) <= STATUS_MAX_CHARS
    assert dumped["done"] == dumped["failed"] == 80 and dumped["steps"][-1]["step_id"] == steps[-1]["id"]
    if id_chars == 8:  # short ids: every summary a status may carry fits
        assert len(dumped["steps"]) == STATUS_MAX_STEPS
