"""The bookkeeping of one plan run: which steps are ready, skipped or done, and the final :class:`RunResult`.

Pure and deterministic (it runs inside the Durable orchestrator); the orchestrator only yields the calls this
object prepares and feeds back their outcomes. Tested without any runtime.

Steps are released as soon as their own dependencies have finished (:meth:`PlanRun.take_ready`): no step waits for
an unrelated slower one. A long run is carried across ``continue_as_new`` generations by :meth:`PlanRun.checkpoint`,
which keeps each finished step's status, not its record: the orchestrator archives the records a generation finished
in the payload store (one activity call per generation) and reads them back once for the final result, so the input
of a generation, which every replay parses, does not grow with the steps already done.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
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
from shared.runs.custom_status import CustomStatus, RecentSteps, fit_status
from shared.runs.names import Stage
from shared.runs.plan import PlanGraph, check_plan, referenced_steps, resolve_refs_except
from shared.runs.step_calls import StepCall, StepOutcome, offloaded, offloaded_ref

__all__ = ["CHECKPOINT_VERSION", "PlanRun"]

CHECKPOINT_VERSION = 2
"""Version of the state :meth:`PlanRun.checkpoint` writes (1 carried every finished record; still read)."""

_FINISHED = (StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED)
_FAIL_FAST = "not run: an earlier step failed and the run asked to fail fast"
_STATUS_OF = {status.value: status for status in StepStatus}  # a dict lookup, not Enum() per carried step and replay


class PlanRun:
    """Progress of a plan: :meth:`take_ready` the calls whose dependencies are done, feed their outcomes to
    :meth:`record` as they arrive, repeat until :attr:`finished`.

    ``graph`` is ``check_plan``'s graph when the caller has it already (it is a pure function of the plan);
    ``state`` is a :meth:`checkpoint` of an earlier generation of the same run.
    """

    def __init__(
        self, run_id: str, plan: Plan, specs: Mapping[str, ToolSpec], options: RunOptions, started: datetime,
        *, graph: PlanGraph | None = None, state: Mapping[str, Any] | None = None,
    ) -> None:
        self.run_id = run_id
        self.plan = plan
        self.specs = specs
        self.options = options
        self.started = started
        self.problems: list[ErrorInfo] = []
        if graph is None:
            problems, graph = check_plan(plan, specs, check_arguments=False)
            self.problems = [ErrorInfo(code=PlanInvalid.code, message=p.message, field=p.field) for p in problems]
        self.graph: PlanGraph | None = graph
        self.records: dict[str, StepRecord] = {}
        """Records of the steps this generation touched (every step once :meth:`result` ran)."""
        self.results: dict[str, Any] = {}
        """Results later steps may still reference (an :func:`offloaded` placeholder for a stored one)."""
        self.failed = False
        self.done = 0
        """Steps that succeeded, failed or were skipped."""
        self.calls_made = 0
        """Calls prepared in this generation (the orchestrator checkpoints after enough of them)."""
        self._carried: Mapping[str, dict[str, Any]] = {}
        self.archives: list[str] = []
        """Payload references of the records earlier generations finished (see :meth:`restore_archived`)."""
        self._state: dict[str, StepStatus] = {}
        self._failures = 0
        self._skips = 0
        self._recent = RecentSteps()
        self._outside = _Outside()
        self._waiting: dict[str, int] = {}
        self._ready: deque[str] = deque()
        if graph is not None:
            self._start(graph, state)

    def _start(self, graph: PlanGraph, state: Mapping[str, Any] | None) -> None:
        if state is not None:
            self._carried = state["records"]
            self.archives = list(state.get("archives", ()))
            self._state = {step_id: StepStatus(record["status"]) for step_id, record in self._carried.items()}
            self._state.update((step_id, _STATUS_OF[status]) for step_id, status in state.get("statuses", {}).items())
            self.results = dict(state["results"])
            self.failed = bool(state["failed"])
            self._failures = sum(status == StepStatus.FAILED for status in self._state.values())
            self._skips = sum(status == StepStatus.SKIPPED for status in self._state.values())
            self.done = len(self._state)
            self._recent = RecentSteps(state["recent"])
            if "outside" in state:
                self._outside = _Outside(**state["outside"])
        for step_id, parents in graph.dependencies.items():
            if step_id in self._state:
                continue
            left = sum(parent not in self._state for parent in parents)
            if left:
                self._waiting[step_id] = left
            else:
                self._ready.append(step_id)

    # ------------------------------------------------------------------------------------------- ready-driven

    @property
    def has_ready(self) -> bool:
        """Whether some step's dependencies are all done and it has not been prepared yet."""
        return bool(self._ready)

    @property
    def finished(self) -> bool:
        """Every step succeeded, failed or was skipped."""
        return self.graph is None or self.done == len(self.graph.steps)

    @property
    def counts(self) -> tuple[int, int]:
        """``(failed, skipped)`` steps of this plan (or window)."""
        return self._failures, self._skips

    @property
    def recent(self) -> list[dict[str, Any]]:
        """The latest step summaries (what the custom status shows, and a checkpoint carries)."""
        return self._recent.entries()

    @property
    def outside_pending(self) -> bool:
        """A window of a longer plan (see :mod:`shared.runs.plan_window`): whether steps outside it are unfinished."""
        return self._outside.done < self._outside.total

    def next_window(self, limit: int, now: datetime) -> list[str]:
        """The steps the next generation of a long plan runs, in plan order: every ready step that can run (the others
        are skipped here, as :meth:`take_ready` would) and, breadth first, the steps that wait only on these or on
        steps that succeeded, until there are ``limit`` (every ready step even beyond it)."""
        assert self.graph is not None
        graph = self.graph
        self.skip_blocked(now)
        chosen: dict[str, None] = {}
        while self._ready:
            step_id = self._ready.popleft()
            reason = self._skip_reason(step_id, now)
            if reason is None:
                chosen[step_id] = None
            else:
                self._skip(self._record_of(step_id), reason, now)
        frontier = deque(chosen)
        while frontier and len(chosen) < limit:
            for child in graph.dependents[frontier.popleft()]:
                if child in chosen or child in self._state:
                    continue
                if all(parent in chosen or self._state.get(parent) == StepStatus.SUCCEEDED
                       for parent in graph.dependencies[child]):
                    chosen[child] = None
                    frontier.append(child)
                    if len(chosen) >= limit:
                        break
        return sorted(chosen, key=graph.index.__getitem__)

    def take_ready(self, now: datetime, limit: int | None = None) -> list[StepCall]:
        """Up to ``limit`` calls of ready steps, in the order they became ready (plan order among those released
        together). Ready steps that cannot run are skipped or failed here, which may release others."""
        calls: list[StepCall] = []
        while self._ready and (limit is None or len(calls) < limit):
            call = self._prepare_one(self._ready.popleft(), now)
            if call is not None:
                calls.append(call)
        return calls

    def skip_blocked(self, now: datetime, *, expired: bool = False) -> None:
        """Skip what a whole plan's run skips as soon as a step fails or is skipped: the ready steps a dependency of
        which did not succeed, and what waits on them (every step not started in a fail-fast run that failed). For
        the steps outside the last window of a long plan (see :mod:`shared.runs.plan_window`), before
        :meth:`stopped` or :meth:`expire` gives the rest their reason. With ``expired``, a dependency the deadline
        skipped blocks nothing here: a whole run skips what waits on it with the deadline's reason too."""
        if self.options.fail_fast and self.failed:
            self._skip_unstarted(_FAIL_FAST, now)
            return
        deadline = self._deadline_message() if expired else None
        for step_id in list(self._ready):
            reason = self._blocked_reason(step_id, passing=deadline)
            if reason is not None:
                self._ready.remove(step_id)
                self._skip(self._record_of(step_id), reason, now)

    def expire(self, now: datetime) -> None:
        """The run's deadline passed: every step not started yet is skipped."""
        self._skip_unstarted(self._deadline_message(), now)
        self.failed = True

    def _deadline_message(self) -> str:
        return f"not run: the run's deadline (options.timeout_s={self.options.timeout_s or 0.0:g}) had passed"

    def mark_started(self, calls: list[StepCall], now: datetime) -> None:
        """The calls are being scheduled now (a call may wait for capacity or an approval after it is prepared)."""
        for call in calls:
            self.records[call.call.step_id].started_at = now

    def record(self, outcomes: list[StepOutcome], now: datetime) -> None:
        """Take the outcomes of calls :meth:`take_ready` returned."""
        for outcome in outcomes:
            record = self._record_of(outcome.step_id)
            result = outcome.result
            record.attempts = outcome.attempts
            record.latency_ms = result.latency_ms
            record.finished_at = now
            record.redelivered = result.redelivered  # a crash inside the tool may have run it twice
            if result.ok:
                record.status = StepStatus.SUCCEEDED
                record.result = result.recorded_value()
                self.results[outcome.step_id] = offloaded(result.blob_ref) if result.blob_ref else result.value
            else:
                record.status = StepStatus.FAILED
                record.error = result.error
            self._settled(record, now)

    def status_dump(self, now: datetime, **extra: Any) -> dict[str, Any]:
        """:meth:`status` as JSON data, built from cached step summaries (cheap enough for every completion)."""
        outside = self._outside
        dumped: dict[str, Any] = {"stage": Stage.EXECUTING.value, "mode": "plan", **extra,
                                  "done": self.done + outside.done,
                                  "total": (len(self.graph.steps) if self.graph else 0) + outside.total,
                                  "failed": self._failures + outside.failed, "skipped": self._skips + outside.skipped,
                                  "elapsed_ms": _ms(now - self.started)}
        if self._recent:
            dumped["steps"] = self.recent
        if extra or not self._recent.fits():  # else it fits: no need to measure
            return fit_status(dumped)
        return dumped

    def status(self, now: datetime) -> CustomStatus:
        """The orchestration's custom status while the plan executes."""
        return CustomStatus.model_validate(self.status_dump(now))

    def result(self, now: datetime, mode: RunMode = "plan") -> RunResult:
        """The final :class:`RunResult`: leaf steps' results as output; failed/skipped steps as errors."""
        self._check_restored()
        if self.problems or self.graph is None:
            ids = dict.fromkeys(step.id for step in self.plan.steps)
            return RunResult(run_id=self.run_id, mode=mode, status=RunStatus.FAILED,
                             steps=[self._record_of(step_id) for step_id in ids], errors=self.problems,
                             elapsed_ms=_ms(now - self.started))
        graph = self.graph
        records = [self._record_of(s.id) for s in self.plan.steps]
        errors = [
            ErrorInfo(code=r.error.code if r.error else StepFailed.code,
                      message=f"step {r.step_id!r} ({r.tool}): {r.error.message if r.error else r.status.value}",
                      field=f"plan.steps[{graph.index[r.step_id]}]", retryable=False)
            for r in records if r.status == StepStatus.FAILED
        ]
        if not errors and all(r.status == StepStatus.SUCCEEDED for r in records):
            status = RunStatus.COMPLETED
        elif self.options.fail_fast:
            status = RunStatus.FAILED
        else:
            status = RunStatus.COMPLETED_WITH_ERRORS
        leaves = [s.id for s in self.plan.steps if not graph.dependents[s.id]]
        output = {sid: self.records[sid].result for sid in leaves if self.records[sid].status == StepStatus.SUCCEEDED}
        return RunResult(run_id=self.run_id, mode=mode, status=status, steps=records, output=output, errors=errors,
                         elapsed_ms=_ms(now - self.started))

    def stopped(self, error: ErrorInfo, now: datetime) -> RunResult:
        """The result of a run stopped by ``error`` (an approval denied or timed out): the steps that had not run
        are skipped, and the run fails with that error. A step waiting on one of them is skipped with it, naming it
        (whatever the plan's order), once."""
        self._check_restored()
        unfinished = [s.id for s in self.plan.steps if self._state.get(s.id) not in _FINISHED]
        for step_id in sorted(unfinished, key=self._waiting.__contains__):  # stable: plan order, waiting ones last
            if self._state.get(step_id) not in _FINISHED:
                self._waiting.pop(step_id, None)
                self._skip(self._record_of(step_id), f"not run: {error.message}", now)
        return RunResult(run_id=self.run_id, mode="plan", status=RunStatus.FAILED,
                         steps=[self._record_of(s.id) for s in self.plan.steps], errors=[error],
                         elapsed_ms=_ms(now - self.started))

    def started_records(self) -> list[StepRecord]:
        """The records of calls prepared and not finished: awaiting an approval, or approved and not started, when
        the run stops (no call is in flight then)."""
        return [self.records[step_id] for step_id, status in self._state.items() if status == StepStatus.RUNNING]

    def resume_started(self, records: list[StepRecord]) -> None:
        """Take over the calls of :meth:`started_records` of a window of this plan (see
        :mod:`shared.runs.plan_window`), as if this run had prepared them: :meth:`stopped` then reports them as a
        whole plan's run would, arguments' hash and start included."""
        taken = {record.step_id for record in records}
        for record in records:
            self.records[record.step_id] = record
            self._state[record.step_id] = StepStatus.RUNNING
            self._waiting.pop(record.step_id, None)
        self._ready = deque(step_id for step_id in self._ready if step_id not in taken)

    def unarchived_records(self) -> dict[str, dict[str, Any]]:
        """The records of finished steps not archived yet (as JSON): what the orchestrator archives before it
        checkpoints."""
        records = dict(self._carried)
        records.update((step_id, self.records[step_id].model_dump(mode="json", exclude_none=True))
                       for step_id, status in self._state.items()
                       if status in _FINISHED and step_id not in records and step_id in self.records)
        return records

    def checkpoint(self, archive: str | None = None) -> dict[str, Any]:
        """JSON state to go on from in the next ``continue_as_new`` generation (only when no call is in flight):
        the finished steps' statuses, the results later steps still reference, the counts. ``archive`` is the
        payload reference of :meth:`unarchived_records` stored; without one the records are carried inline."""
        assert self.graph is not None
        statuses = {step_id: status.value for step_id, status in self._state.items() if status in _FINISHED}
        needed = {parent for step_id in self.graph.steps if step_id not in statuses
                  for parent in self.graph.dependencies[step_id]}
        return {"v": CHECKPOINT_VERSION, "statuses": statuses,
                "records": {} if archive is not None else self.unarchived_records(),
                "archives": [*self.archives, archive] if archive is not None else list(self.archives),
                "failed": self.failed,
                "results": {step_id: value for step_id, value in self.results.items()
                            if step_id in needed or self._outside.total},  # steps outside a window may need any
                "recent": self.recent}

    def restore_archived(self, records: Mapping[str, dict[str, Any]]) -> None:
        """Take back the records earlier generations archived (read from :attr:`archives`), before :meth:`result`
        or :meth:`stopped` lists every step."""
        self._carried = {**records, **self._carried}
        self.archives = []

    # ------------------------------------------------------------------------------------------- internals

    def _check_restored(self) -> None:
        if self.archives:
            raise RuntimeError("the archived step records must be restored (restore_archived) before the result")

    def _record_of(self, step_id: str) -> StepRecord:
        record = self.records.get(step_id)
        if record is None:
            carried = self._carried.get(step_id)
            if carried is not None:
                record = StepRecord.model_validate(carried)
            else:
                record = StepRecord(step_id=step_id, tool=self.plan_step_tool(step_id))
            self.records[step_id] = record
        return record

    def plan_step_tool(self, step_id: str) -> str:
        """The tool step ``step_id`` calls."""
        if self.graph is not None:
            return self.graph.steps[step_id].tool
        return next(step.tool for step in self.plan.steps if step.id == step_id)

    def _prepare_one(self, step_id: str, now: datetime) -> StepCall | None:
        assert self.graph is not None
        record = self._record_of(step_id)
        reason = self._skip_reason(step_id, now)
        if reason is not None:
            self._skip(record, reason, now)
            return None
        step = self.graph.steps[step_id]
        stored = {dep: ref for dep in self.graph.dependencies[step_id]
                  if (ref := offloaded_ref(self.results.get(dep))) is not None}
        read = referenced_steps(step.args) if stored else set()
        waiting_on_blobs = {dep: ref for dep, ref in stored.items() if dep in read}
        try:
            if waiting_on_blobs:
                args = resolve_refs_except(step.args, self.results, set(waiting_on_blobs))
            else:
                args = self.graph.resolve_args(step_id, self.results)
        except PlanInvalid as exc:
            record.status = StepStatus.FAILED
            record.error = ErrorInfo.from_exception(exc)
            record.finished_at = now
            self._settled(record, now)
            return None
        record.status = StepStatus.RUNNING
        record.started_at = now
        record.args_hash = hash_args(args)
        self._state[step_id] = StepStatus.RUNNING
        self._summarize(record)
        self.calls_made += 1
        return StepCall(call=ToolCall(run_id=self.run_id, step_id=step_id, tool=step.tool, args=args),
                        offloaded=waiting_on_blobs, retry=self.specs[step.tool].retry)

    def _skip_reason(self, step_id: str, now: datetime) -> str | None:
        """Why ready step ``step_id`` cannot run (a run past its deadline is failed here), None when it can."""
        reason = self._blocked_reason(step_id)
        if reason is not None:
            return reason
        if self.options.timeout_s is not None and (now - self.started).total_seconds() > self.options.timeout_s:
            self.failed = True
            return self._deadline_message()
        return None

    def _blocked_reason(self, step_id: str, passing: str | None = None) -> str | None:
        """Why ready step ``step_id`` cannot run whatever the time: a dependency did not succeed, or fail fast. A
        dependency skipped with the message ``passing`` does not count."""
        assert self.graph is not None
        blocking = [d for d in self.graph.dependencies[step_id] if self._state.get(d) != StepStatus.SUCCEEDED
                    and not (passing is not None and self._skipped_with(d, passing))]
        if blocking:
            cause = blocking[0]
            return f"not run: step {cause!r} {self._state.get(cause, StepStatus.PENDING).value}"
        if self.options.fail_fast and self.failed:
            return _FAIL_FAST
        return None

    def _skipped_with(self, step_id: str, message: str) -> bool:
        if self._state.get(step_id) != StepStatus.SKIPPED:
            return False
        error = self._record_of(step_id).error
        return error is not None and error.message == message

    def _skip(self, record: StepRecord, message: str, now: datetime) -> None:
        record.status = StepStatus.SKIPPED
        record.error = ErrorInfo.of(StepSkipped, message)
        record.finished_at = now
        self._settled(record, now)

    def _settled(self, record: StepRecord, now: datetime) -> None:
        """``record`` just succeeded, failed or was skipped: count it and release (or skip) what waited for it."""
        step_id = record.step_id
        self._state[step_id] = record.status
        self._summarize(record)
        self.done += 1
        if record.status == StepStatus.SUCCEEDED:
            assert self.graph is not None
            for child in self.graph.dependents[step_id]:
                left = self._waiting.get(child)
                if left is None:
                    continue
                if left == 1:
                    del self._waiting[child]
                    self._ready.append(child)
                else:
                    self._waiting[child] = left - 1
            return
        if record.status == StepStatus.FAILED:
            self._failures += 1
            self.failed = True
        else:
            self._skips += 1
        if self.options.fail_fast and record.status == StepStatus.FAILED:
            self._skip_unstarted(_FAIL_FAST, now)
            return
        assert self.graph is not None
        for child in self.graph.dependents[step_id]:  # nothing that needs this step's result can run any more
            if self._waiting.pop(child, None) is not None:
                self._skip(self._record_of(child), f"not run: step {step_id!r} {record.status.value}", now)

    def _skip_unstarted(self, message: str, now: datetime) -> None:
        assert self.graph is not None
        unstarted = [step_id for step_id in self.graph.steps if step_id not in self._state]
        self._ready.clear()
        self._waiting.clear()
        for step_id in unstarted:
            if step_id not in self._state:
                self._skip(self._record_of(step_id), message, now)

    def _summarize(self, record: StepRecord) -> None:
        """Keep ``record``'s :class:`StepSummary` as JSON (built by hand: this runs for every step on every replay)."""
        summary: dict[str, Any] = {"step_id": record.step_id, "tool": record.tool, "status": record.status.value,
                                   "attempts": record.attempts}
        if record.latency_ms is not None:
            summary["latency_ms"] = record.latency_ms
        if record.error is not None:
            summary["error"] = record.error.code
        self._recent.add(summary)


@dataclass(frozen=True)
class _Outside:
    """Counts of the steps of a long plan outside the window a generation runs (all zero for a whole plan)."""

    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0


def _ms(delta: Any) -> float:
    return round(delta.total_seconds() * 1000.0, 3)
