"""The bookkeeping of one plan run: which steps are ready, skipped or done, and the final :class:`RunResult`.

Pure and deterministic (it runs inside the Durable orchestrator); the orchestrator only yields the calls this
object prepares and feeds back their outcomes. Tested without any runtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.errors import PlanInvalid, StepFailed, StepSkipped
from shared.models import (
    ErrorInfo,
    Plan,
    RunMode,
    RunOptions,
    RunResult,
    RunStatus,
    StepRecord,
    StepStatus,
    ToolCall,
    ToolSpec,
    hash_args,
)
from shared.runs.contracts import CustomStatus, step_summaries
from shared.runs.names import Stage
from shared.runs.plan import PlanGraph, check_plan, is_ref, parse_ref, resolve_refs
from shared.runs.step_calls import StepCall, StepOutcome, offloaded, offloaded_ref

__all__ = ["PlanRun"]


class PlanRun:
    """Progress of a plan: build it, then for each level call :meth:`prepare` and :meth:`record`."""

    def __init__(
        self, run_id: str, plan: Plan, specs: Mapping[str, ToolSpec], options: RunOptions, started: datetime
    ) -> None:
        self.run_id = run_id
        self.plan = plan
        self.specs = specs
        self.options = options
        self.started = started
        problems, graph = check_plan(plan, specs, check_arguments=False)
        self.problems = [ErrorInfo(code=PlanInvalid.code, message=p.message, field=p.field) for p in problems]
        self.graph: PlanGraph | None = graph
        self.records = {step.id: StepRecord(step_id=step.id, tool=step.tool) for step in plan.steps}
        self.results: dict[str, Any] = {}
        self.failed = False
        self.done = 0
        """Steps that succeeded, failed or were skipped (kept as a count: replays call this every level)."""

    @property
    def levels(self) -> list[list[str]]:
        return self.graph.levels() if self.graph else []

    def prepare(self, level: list[str], now: datetime) -> list[StepCall]:
        """The calls to make for ``level``; steps that cannot run are marked skipped or failed here."""
        assert self.graph is not None
        calls = []
        for step_id in level:
            record = self.records[step_id]
            blocking = [d for d in self.graph.dependencies[step_id]
                        if self.records[d].status != StepStatus.SUCCEEDED]
            if blocking:
                cause = self.records[blocking[0]]
                self._skip(record, f"not run: step {cause.step_id!r} {cause.status.value}", now)
                continue
            if self.options.fail_fast and self.failed:
                self._skip(record, "not run: an earlier step failed and the run asked to fail fast", now)
                continue
            if self.options.timeout_s is not None and (now - self.started).total_seconds() > self.options.timeout_s:
                self._skip(record, f"not run: the run's deadline (options.timeout_s={self.options.timeout_s:g}) "
                           "had passed", now)
                self.failed = True
                continue
            step = self.graph.steps[step_id]
            stored = {dep: ref for dep in self.graph.dependencies[step_id]
                      if (ref := offloaded_ref(self.results.get(dep))) is not None}
            referenced = {parse_ref(raw).step for raw in _refs(step.args)}
            waiting_on_blobs = {dep: ref for dep, ref in stored.items() if dep in referenced}
            try:
                if waiting_on_blobs:
                    args = _resolve_except(step.args, self.results, set(waiting_on_blobs))
                else:
                    args = self.graph.resolve_args(step_id, self.results)
            except PlanInvalid as exc:
                record.status = StepStatus.FAILED
                record.error = ErrorInfo.from_exception(exc)
                record.finished_at = now
                self.failed = True
                self.done += 1
                continue
            record.status = StepStatus.RUNNING
            record.started_at = now
            record.args_hash = hash_args(args)
            calls.append(StepCall(
                call=ToolCall(run_id=self.run_id, step_id=step_id, tool=step.tool, args=args),
                offloaded=waiting_on_blobs,
                retry=self.specs[step.tool].retry,
            ))
        return calls

    def mark_started(self, calls: list[StepCall], now: datetime) -> None:
        """The calls are being scheduled now (a level may go out in batches)."""
        for call in calls:
            self.records[call.call.step_id].started_at = now

    def record(self, outcomes: list[StepOutcome], now: datetime) -> None:
        """Take the outcomes of the calls :meth:`prepare` returned."""
        for outcome in outcomes:
            record = self.records[outcome.step_id]
            result = outcome.result
            record.attempts = outcome.attempts
            record.latency_ms = result.latency_ms
            record.finished_at = now
            self.done += 1
            if result.ok:
                record.status = StepStatus.SUCCEEDED
                record.result = result.recorded_value()
                self.results[outcome.step_id] = offloaded(result.blob_ref) if result.blob_ref else result.value
            else:
                record.status = StepStatus.FAILED
                record.error = result.error
                self.failed = True

    def status(self, now: datetime) -> CustomStatus:
        """The orchestration's custom status while the plan executes."""
        records = list(self.records.values())
        return CustomStatus(stage=Stage.EXECUTING, mode="plan", done=self.done, total=len(self.records),
                            failed=sum(r.status == StepStatus.FAILED for r in records),
                            skipped=sum(r.status == StepStatus.SKIPPED for r in records),
                            elapsed_ms=_ms(now - self.started), steps=step_summaries(records))

    def result(self, now: datetime, mode: RunMode = "plan") -> RunResult:
        """The final :class:`RunResult`: leaf steps' results as output; failed/skipped steps as errors."""
        if self.problems:
            return RunResult(run_id=self.run_id, mode=mode, status=RunStatus.FAILED,
                             steps=list(self.records.values()), errors=self.problems,
                             elapsed_ms=_ms(now - self.started))
        assert self.graph is not None
        records = [self.records[s.id] for s in self.plan.steps]
        errors = [
            ErrorInfo(code=r.error.code if r.error else StepFailed.code,
                      message=f"step {r.step_id!r} ({r.tool}): {r.error.message if r.error else r.status.value}",
                      field=f"plan.steps[{self.graph.index[r.step_id]}]", retryable=False)
            for r in records if r.status == StepStatus.FAILED
        ]
        if not errors and all(r.status == StepStatus.SUCCEEDED for r in records):
            status = RunStatus.COMPLETED
        elif self.options.fail_fast:
            status = RunStatus.FAILED
        else:
            status = RunStatus.COMPLETED_WITH_ERRORS
        leaves = [s.id for s in self.plan.steps if not self.graph.dependents[s.id]]
        output = {sid: self.records[sid].result for sid in leaves if self.records[sid].status == StepStatus.SUCCEEDED}
        return RunResult(run_id=self.run_id, mode=mode, status=status, steps=records, output=output, errors=errors,
                         elapsed_ms=_ms(now - self.started))

    def stopped(self, error: ErrorInfo, now: datetime) -> RunResult:
        """The result of a run stopped by ``error`` (an approval denied or timed out): the steps that had not run
        are skipped, and the run fails with that error."""
        for record in self.records.values():
            if record.status in (StepStatus.PENDING, StepStatus.RUNNING):
                self._skip(record, f"not run: {error.message}", now)
        return RunResult(run_id=self.run_id, mode="plan", status=RunStatus.FAILED, steps=list(self.records.values()),
                         errors=[error], elapsed_ms=_ms(now - self.started))

    def _skip(self, record: StepRecord, message: str, now: datetime) -> None:
        self.done += 1
        record.status = StepStatus.SKIPPED
        record.error = ErrorInfo.of(StepSkipped, message)
        record.finished_at = now


def _resolve_except(value: Any, results: Mapping[str, Any], kept: set[str]) -> Any:
    """Resolve references except those into ``kept`` steps (their results live in the payload store)."""
    if is_ref(value):
        if parse_ref(value["$ref"]).step in kept:
            return value
        return resolve_refs({"value": value}, results)["value"]
    if isinstance(value, dict):
        return {k: _resolve_except(v, results, kept) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_except(v, results, kept) for v in value]
    return value


def _refs(value: Any) -> list[Any]:
    found: list[Any] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if is_ref(item):
            found.append(item["$ref"])
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _ms(delta: Any) -> float:
    return round(delta.total_seconds() * 1000.0, 3)
