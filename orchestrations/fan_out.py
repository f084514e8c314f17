"""Executing tool calls as Durable activities: retries, circuit waits, fan-out width, per-call failures.

:func:`execute_calls` / :func:`execute_wide` run a batch and return when all of it is done; :class:`Flight` keeps
calls in flight for a ready-driven plan and hands back each outcome as soon as it arrives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskBase, TaskState

from orchestrations.durable import retry_options
from shared.errors import RunTimedOut
from shared.models import ErrorInfo, ToolResult
from shared.runs.names import Activity, Orchestrator
from shared.runs.step_calls import CircuitWait, StepCall, StepOutcome, error_from_failure
from shared.telemetry import telemetry_from_env

bp = df.Blueprint()


class _Slot:
    """One call in flight: its current task (an activity with retries, or a timer while its circuit cools down) and
    the attempts spent before that task."""

    def __init__(self, context: df.DurableOrchestrationContext, call: StepCall) -> None:
        self.call = call
        self.spent = 0
        self.waiting = False
        self.outcome: StepOutcome | None = None
        self.task: TaskBase = self._attempt(context)

    def _attempt(self, context: df.DurableOrchestrationContext) -> TaskBase:
        return context.call_activity_with_retry(Activity.CALL_TOOL, retry_options(self.call.retry, self.spent),
                                                self.call.model_dump(mode="json"))

    def advance(self, context: df.DurableOrchestrationContext) -> None:
        """The current task finished: settle the outcome, or start the next wait or attempt."""
        if self.waiting:  # the cool-down is over: try again with the attempts left
            self.waiting = False
            self.task = self._attempt(context)
            return
        self.spent += int(getattr(self.task, "num_attempts", 1))
        if self.task.state != TaskState.SUCCEEDED:
            result = ToolResult(ok=False, error=error_from_failure(str(self.task.result)))
        elif (wait := CircuitWait.from_output(self.task.result)) is None:
            result = ToolResult.model_validate(self.task.result)
        elif self.spent >= self.call.retry.max_attempts:
            result = ToolResult(ok=False, error=wait.circuit_open)
        else:
            delay = max(wait.retry_after_s, self.call.retry.first_interval_ms / 1000.0)
            self.waiting = True
            self.task = context.create_timer(context.current_utc_datetime + timedelta(seconds=delay))
            return
        self.outcome = StepOutcome(step_id=self.call.call.step_id, result=result, attempts=self.spent)
        telemetry_from_env().orchestration(context).tool_retried(self.call.call.tool, self.spent)

    @property
    def outcomes(self) -> list[StepOutcome] | None:
        return None if self.outcome is None else [self.outcome]

    def abandon(self, context: df.DurableOrchestrationContext, deadline: datetime | None) -> list[StepOutcome]:
        """The deadline passed: the outcome if the call has one, else a ``timed_out`` failure."""
        if self.outcome is None and self.task.state != TaskState.RUNNING and not self.waiting:
            self.advance(context)
        return self.outcomes or [StepOutcome(step_id=self.call.call.step_id, attempts=max(1, self.spent),
                                             result=ToolResult(ok=False, error=_timed_out(deadline)))]


class _Fanout:
    """A wide batch run by ``run_steps`` sub-orchestrations of at most ``max_fan_out`` calls each, settled all at
    once (as a level was): the orchestrator wakes once for the batch, not once per slice."""

    def __init__(self, context: df.DurableOrchestrationContext, chunks: list[list[StepCall]], prefix: str) -> None:
        self.chunks = chunks
        self.children: list[TaskBase] = [
            context.call_sub_orchestrator(Orchestrator.RUN_STEPS, [call.model_dump(mode="json") for call in chunk],
                                          f"{prefix}.{index}")
            for index, chunk in enumerate(chunks)
        ]
        self.outcomes: list[StepOutcome] | None = None
        self.task: TaskBase = context.task_all(self.children)

    def advance(self, context: df.DurableOrchestrationContext) -> None:
        running = [child for child in self.children if child.state == TaskState.RUNNING]
        if running:  # a slice failed (task_all stops at the first failure): wait for the others
            self.task = context.task_all(running)
            return
        self.outcomes = self._settled(None)

    def abandon(self, context: df.DurableOrchestrationContext, deadline: datetime | None) -> list[StepOutcome]:
        return self.outcomes or self._settled(_timed_out(deadline))

    def _settled(self, late: ErrorInfo | None) -> list[StepOutcome]:
        outcomes: list[StepOutcome] = []
        for chunk, child in zip(self.chunks, self.children, strict=True):
            if child.state == TaskState.SUCCEEDED:
                outcomes += [StepOutcome.model_validate(outcome) for outcome in child.result]
                continue
            error = error_from_failure(str(child.result)) if child.state == TaskState.FAILED else late
            assert error is not None
            outcomes += [StepOutcome(step_id=call.call.step_id, result=ToolResult(ok=False, error=error))
                         for call in chunk]
        return outcomes


_BUCKET = 16
"""Calls awaited under one inner ``task_any``. A completion rebuilds only its bucket's ``task_any`` and the outer
one over the buckets, so each costs the orchestrator O(bucket + width / bucket) on every replay instead of O(width)
for one ``task_any`` over every call in flight."""


class _Bucket:
    def __init__(self, context: df.DurableOrchestrationContext, members: list[_Slot | _Fanout]) -> None:
        self.members = members
        self.task: TaskBase = context.task_any([member.task for member in members])


class Flight:
    """The calls of a ready-driven run in flight: :meth:`start` them, yield :meth:`wait` (it returns at the first
    completion, or when one of the ``extra`` tasks completes), then :meth:`settle` for the outcomes that arrived.

    Each call is its own activity (with its tool's retries and circuit waits, as in :func:`execute_calls`) while at
    most ``max_fan_out`` such calls are in flight; a batch that would exceed that goes out as ``run_steps``
    sub-orchestrations of at most ``max_fan_out`` calls (their outcomes arrive together), so no history grows with
    the width of a plan.
    """

    def __init__(self, context: df.DurableOrchestrationContext, max_fan_out: int, chunk_prefix: str) -> None:
        self.context = context
        self.max_fan_out = max_fan_out
        self.chunk_prefix = chunk_prefix
        self.count = 0
        """Calls in flight (those of sub-orchestrations included)."""
        self._singles = 0
        self._batches = 0
        self._buckets: list[_Bucket] = []

    def start(self, calls: list[StepCall]) -> None:
        """Dispatch ``calls`` now."""
        if not calls:
            return
        members: list[_Slot | _Fanout]
        if self._singles + len(calls) <= self.max_fan_out:
            members = [_Slot(self.context, call) for call in calls]
            self._singles += len(calls)
        else:
            chunks = [calls[start : start + self.max_fan_out] for start in range(0, len(calls), self.max_fan_out)]
            members = [_Fanout(self.context, chunks, f"{self.chunk_prefix}.{self._batches}")]
            self._batches += 1
        self.count += len(calls)
        for start in range(0, len(members), _BUCKET):
            self._buckets.append(_Bucket(self.context, members[start : start + _BUCKET]))

    def wait(self, *extra: TaskBase | None) -> TaskBase:
        """The task to yield: it completes with the first call (or ``extra`` task) that does."""
        return self.context.task_any([bucket.task for bucket in self._buckets]
                                     + [task for task in extra if task is not None])

    def settle(self) -> list[StepOutcome]:
        """The outcomes that arrived since the last call (retries and circuit waits move on by themselves)."""
        outcomes: list[StepOutcome] = []
        kept: list[_Bucket] = []
        for bucket in self._buckets:
            if bucket.task.state == TaskState.RUNNING:
                kept.append(bucket)
                continue
            running: list[_Slot | _Fanout] = []
            for member in bucket.members:
                if member.task.state != TaskState.RUNNING:
                    member.advance(self.context)
                done = member.outcomes
                if done is None:
                    running.append(member)
                else:
                    outcomes += done
                    self._left(member, len(done))
            if running:
                kept.append(_Bucket(self.context, running))
        self._buckets = kept
        return outcomes

    def abandon(self, deadline: datetime | None) -> list[StepOutcome]:
        """The run's deadline passed: what finished counts, the calls still in flight are ``timed_out`` failures
        (whatever they answer later is ignored)."""
        outcomes = [outcome for bucket in self._buckets for member in bucket.members
                    for outcome in member.abandon(self.context, deadline)]
        self._buckets = []
        self.count = self._singles = 0
        return outcomes

    def _left(self, member: _Slot | _Fanout, calls: int) -> None:
        self.count -= calls
        if isinstance(member, _Slot):
            self._singles -= 1


def execute_calls(
    context: df.DurableOrchestrationContext, calls: list[StepCall], deadline: datetime | None = None
) -> Generator[Any, Any, list[StepOutcome]]:
    """Run ``calls`` in parallel as ``call_tool`` activities with each tool's retry policy.

    A call rejected by its tool's open circuit (a :class:`CircuitWait`) waits on a durable timer for the rest of the
    breaker's cool-down (at least the policy's first interval) and is tried again; the rejected attempts count
    against ``retry.max_attempts`` like failed ones. Every call is awaited until it has an outcome: one failed call
    never hides the others' results. A call settled after more than one attempt counts its retries in
    ``weft.tool.retries`` (once, not on replay).

    The pending calls are awaited together (``task_all``), so a call that meets an open circuit starts its wait
    once the others have settled or one has failed: the wait is a lower bound, so a late start only delays that
    call, while awaiting each completion on its own (``task_any``) costs the orchestrator one more pass over every
    slot per completion, quadratic in the width of a level.

    At ``deadline`` (the run's ``options.timeout_s``) the calls still in flight are abandoned: their outcomes are
    ``timed_out`` failures and whatever they answer later is ignored.
    """
    slots = [_Slot(context, call) for call in calls]
    timer = context.create_timer(deadline) if deadline is not None else None
    while True:
        for slot in slots:
            if slot.outcome is None and slot.task.state != TaskState.RUNNING:
                slot.advance(context)
        pending = [slot.task for slot in slots if slot.outcome is None]
        if not pending:
            break
        with contextlib.suppress(Exception):  # task_all stops at the first failure; each task is read next pass
            yield context.task_all(pending) if timer is None else context.task_any([context.task_all(pending), timer])
        if timer is not None and timer.state == TaskState.SUCCEEDED:
            for slot in slots:  # what finished before the deadline counts; a retry or circuit wait does not start
                if slot.outcome is None and slot.task.state != TaskState.RUNNING and not slot.waiting:
                    slot.advance(context)
                if slot.outcome is None:
                    slot.outcome = StepOutcome(step_id=slot.call.call.step_id, attempts=max(1, slot.spent),
                                               result=ToolResult(ok=False, error=_timed_out(deadline)))
            break
    if timer is not None and timer.state != TaskState.SUCCEEDED:
        timer.cancel()
    return [slot.outcome for slot in slots if slot.outcome is not None]


def _timed_out(deadline: datetime | None) -> ErrorInfo:
    when = deadline.isoformat() if deadline is not None else "its deadline"
    return ErrorInfo.of(RunTimedOut, f"abandoned in flight: the run's deadline (options.timeout_s) passed at {when}")


def execute_wide(
    context: df.DurableOrchestrationContext, calls: list[StepCall], max_fan_out: int, chunk_prefix: str,
    deadline: datetime | None = None,
) -> Generator[Any, Any, list[StepOutcome]]:
    """:func:`execute_calls`, split into ``run_steps`` sub-orchestrations of at most ``max_fan_out`` calls. At
    ``deadline`` the calls of slices not finished yet are abandoned as ``timed_out``."""
    if len(calls) <= max_fan_out:
        return (yield from execute_calls(context, calls, deadline))
    chunks = [calls[i : i + max_fan_out] for i in range(0, len(calls), max_fan_out)]
    children = [
        context.call_sub_orchestrator(
            Orchestrator.RUN_STEPS, [call.model_dump(mode="json") for call in chunk], f"{chunk_prefix}:{index}"
        )
        for index, chunk in enumerate(chunks)
    ]
    if deadline is None:
        results = yield context.task_all(children)
        return [StepOutcome.model_validate(outcome) for chunk in results for outcome in chunk]
    timer = context.create_timer(deadline)
    yield context.task_any([context.task_all(children), timer])
    if timer.state != TaskState.SUCCEEDED:
        timer.cancel()
    outcomes: list[StepOutcome] = []
    for chunk, child in zip(chunks, children, strict=True):
        if child.state == TaskState.SUCCEEDED:
            outcomes += [StepOutcome.model_validate(outcome) for outcome in child.result]
            continue
        error = error_from_failure(str(child.result)) if child.state == TaskState.FAILED else _timed_out(deadline)
        outcomes += [StepOutcome(step_id=call.call.step_id, result=ToolResult(ok=False, error=error)) for call in chunk]
    return outcomes


@bp.orchestration_trigger(context_name="context")
def run_steps(context: df.DurableOrchestrationContext) -> Generator[Any, Any, list[dict[str, Any]]]:
    """A slice of a wide fan-out, run as a sub-orchestration so no single history grows too large."""
    calls = [StepCall.model_validate(item) for item in context.get_input()]
    outcomes = yield from execute_calls(context, calls)
    return [outcome.model_dump(mode="json") for outcome in outcomes]
