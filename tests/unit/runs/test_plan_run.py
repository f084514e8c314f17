"""PlanRun: the pure bookkeeping of a plan run (what the orchestrator yields and records)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from shared.models import ErrorInfo, Plan, RunOptions, RunStatus, StepStatus, ToolResult, ToolSpec
from shared.runs.plan_run import PlanRun
from shared.runs.step_calls import StepOutcome, offloaded_ref

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SPECS = {
    "add": ToolSpec(name="add", parameters={"type": "object", "properties": {"a": {"type": "number"},
                                                                           "b": {"type": "number"}},
                                            "required": ["a", "b"]}),
    "echo": ToolSpec(name="echo", parameters={"type": "object", "properties": {"value": {}}}),
}


def plan(*steps: dict) -> Plan:
    return Plan.model_validate({"steps": list(steps)})


def ok(step_id: str, value: object, attempts: int = 1, blob_ref: str | None = None) -> StepOutcome:
    return StepOutcome(step_id=step_id, attempts=attempts,
                       result=ToolResult(ok=True, value=value, latency_ms=1.5, blob_ref=blob_ref,
                                         truncated=blob_ref is not None))


def failed(step_id: str, message: str = "boom") -> StepOutcome:
    return StepOutcome(step_id=step_id, attempts=3,
                       result=ToolResult(ok=False, error=ErrorInfo(code="tool_failed", message=message)))


DIAMOND = plan(
    {"id": "a", "tool": "add", "args": {"a": 1, "b": 2}},
    {"id": "b", "tool": "add", "args": {"a": {"$ref": "a.sum"}, "b": 10}},
    {"id": "c", "tool": "echo", "args": {"value": {"$ref": "a"}}},
    {"id": "d", "tool": "echo", "args": {"value": [{"$ref": "b.sum"}, {"$ref": "c.value.sum"}]}},
)


def test_ready_steps_refs_and_success() -> None:
    run = PlanRun("r1", DIAMOND, SPECS, RunOptions(), T0)
    first = run.take_ready(T0)
    assert [c.call.args for c in first] == [{"a": 1, "b": 2}]
    assert first[0].call.idempotency_key == "r1:a"
    run.record([ok("a", {"sum": 3})], T0)
    second = run.take_ready(T0)
    assert [c.call.args for c in second] == [{"a": 3, "b": 10}, {"value": {"sum": 3}}]
    run.record([ok("b", {"sum": 13}, attempts=2)], T0)
    assert run.take_ready(T0) == []  # d waits for c too
    run.record([ok("c", {"value": {"sum": 3}})], T0)
    third = run.take_ready(T0)
    assert third[0].call.args == {"value": [13, 3]}
    run.record([ok("d", {"value": [13, 3]})], T0 + dt.timedelta(seconds=2))
    result = run.result(T0 + dt.timedelta(seconds=2))
    assert result.status == RunStatus.COMPLETED
    assert result.output == {"d": {"value": [13, 3]}}
    assert [s.attempts for s in result.steps] == [1, 2, 1, 1]
    assert result.elapsed_ms == 2000.0
    assert all(len(s.args_hash) == 64 for s in result.steps)


def test_a_failure_skips_its_dependents_only() -> None:
    run = PlanRun("r2", DIAMOND, SPECS, RunOptions(), T0)
    run.take_ready(T0)
    run.record([ok("a", {"sum": 3})], T0)
    calls = run.take_ready(T0)
    assert len(calls) == 2
    run.record([failed("b"), ok("c", {"value": 1})], T0)
    assert run.take_ready(T0) == []
    result = run.result(T0)
    by_id = {s.step_id: s for s in result.steps}
    assert by_id["b"].status == StepStatus.FAILED and by_id["b"].attempts == 3
    assert by_id["d"].status == StepStatus.SKIPPED
    assert "'b' failed" in by_id["d"].error.message
    assert result.status == RunStatus.COMPLETED_WITH_ERRORS
    assert [e.field for e in result.errors] == ["plan.steps[1]"]


def test_fail_fast_skips_everything_after_a_failure() -> None:
    independent = plan({"id": "x", "tool": "echo", "args": {}}, {"id": "y", "tool": "echo", "args": {},
                                                                 "depends_on": ["x"]},
                       {"id": "z", "tool": "echo", "args": {}})
    run = PlanRun("r3", independent, SPECS, RunOptions(fail_fast=True), T0)
    assert [call.call.step_id for call in run.take_ready(T0)] == ["x", "z"]
    run.record([failed("x"), ok("z", 1)], T0)
    assert run.take_ready(T0) == []
    assert run.result(T0).status == RunStatus.FAILED


def test_missing_ref_path_at_run_time_fails_the_step() -> None:
    run = PlanRun("r4", DIAMOND, SPECS, RunOptions(), T0)
    run.take_ready(T0)
    run.record([ok("a", {"not_sum": 3})], T0)
    calls = run.take_ready(T0)
    assert [c.call.step_id for c in calls] == ["c"]
    record = run.records["b"]
    assert record.status == StepStatus.FAILED
    assert "sum" in record.error.message


def test_refs_into_offloaded_results_are_left_for_the_activity() -> None:
    run = PlanRun("r5", DIAMOND, SPECS, RunOptions(), T0)
    run.take_ready(T0)
    run.record([ok("a", "{\"sum\": 3, ...", blob_ref="blob:weft-payloads/r5/abc.json")], T0)
    assert offloaded_ref(run.results["a"]) == "blob:weft-payloads/r5/abc.json"
    calls = run.take_ready(T0)
    assert calls[0].offloaded == {"a": "blob:weft-payloads/r5/abc.json"}
    assert calls[0].call.args == {"a": {"$ref": "a.sum"}, "b": 10}
    assert run.records["a"].result["blob_ref"] == "blob:weft-payloads/r5/abc.json"


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        pytest.param([{"id": "a", "tool": "nope", "args": {}}], "plan.steps[0].tool", id="unknown-tool"),
        pytest.param([{"id": "a", "tool": "echo", "args": {}, "depends_on": ["b"]},
                      {"id": "b", "tool": "echo", "args": {}, "depends_on": ["a"]}], "plan.steps[0].depends_on[0]",
                     id="cycle"),
    ],
)
def test_invalid_plans_fail_the_run_with_the_field(steps: list[dict], field: str) -> None:
    """Argument types are checked at admission and by the executor, not on every replay."""
    run = PlanRun("r6", plan(*steps), SPECS, RunOptions(), T0)
    assert not run.has_ready
    result = run.result(T0)
    assert result.status == RunStatus.FAILED
    assert result.errors[0].field == field


def test_deadline_skips_steps_not_yet_started() -> None:
    run = PlanRun("r7", DIAMOND, SPECS, RunOptions(timeout_s=1.0), T0)
    run.take_ready(T0)
    run.record([ok("a", {"sum": 3})], T0 + dt.timedelta(seconds=2))
    assert run.take_ready(T0 + dt.timedelta(seconds=2)) == []
    assert "deadline" in run.records["b"].error.message
    assert run.result(T0 + dt.timedelta(seconds=2)).status == RunStatus.COMPLETED_WITH_ERRORS


def test_a_step_summarys_size_is_never_below_its_json() -> None:
    """The status is trimmed by the summaries' sizes, without encoding it: a size below the real one could let a status
    past Durable's limit. Worst case: the longest status, huge numbers, the longest error code."""
    from shared.errors import WeftError
    from shared.results import StepStatus
    from shared.runs.custom_status import summary_chars as _summary_chars

    codes = [cls.code for cls in _subclasses(WeftError)]
    for status in StepStatus:
        summary = {"step_id": "s" * 64, "tool": "t.o" * 20, "status": status.value, "attempts": 10**9,
                   "latency_ms": 123456789.123456789, "error": max(codes, key=len)}
        assert _summary_chars(summary) >= len(json.dumps(summary)) + 2  # as the SDK encodes it, and a comma


def _subclasses(cls: type) -> list[type]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in _subclasses(child))]
