"""Executing a batch of tool calls as Durable activities: retries, circuit waits, fan-out width, per-call failures."""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskBase, TaskState

from orchestrations.durable import retry_options
from shared.models import ToolResult
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


def execute_calls(
    context: df.DurableOrchestrationContext, calls: list[StepCall]
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
    """
    slots = [_Slot(context, call) for call in calls]
    while True:
        for slot in slots:
            if slot.outcome is None and slot.task.state != TaskState.RUNNING:
                slot.advance(context)
        pending = [slot.task for slot in slots if slot.outcome is None]
        if not pending:
            break
        with contextlib.suppress(Exception):  # task_all stops at the first failure; each task is read next pass
            yield context.task_all(pending)
    return [slot.outcome for slot in slots if slot.outcome is not None]


def execute_wide(
    context: df.DurableOrchestrationContext, calls: list[StepCall], max_fan_out: int, chunk_prefix: str
) -> Generator[Any, Any, list[StepOutcome]]:
    """:func:`execute_calls`, split into ``run_steps`` sub-orchestrations of at most ``max_fan_out`` calls."""
    if len(calls) <= max_fan_out:
        return (yield from execute_calls(context, calls))
    chunks = [calls[i : i + max_fan_out] for i in range(0, len(calls), max_fan_out)]
    children = [
        context.call_sub_orchestrator(
            Orchestrator.RUN_STEPS, [call.model_dump(mode="json") for call in chunk], f"{chunk_prefix}:{index}"
        )
        for index, chunk in enumerate(chunks)
    ]
    results = yield context.task_all(children)
    return [StepOutcome.model_validate(outcome) for chunk in results for outcome in chunk]


@bp.orchestration_trigger(context_name="context")
def run_steps(context: df.DurableOrchestrationContext) -> Generator[Any, Any, list[dict[str, Any]]]:
    """A slice of a wide fan-out, run as a sub-orchestration so no single history grows too large."""
    calls = [StepCall.model_validate(item) for item in context.get_input()]
    outcomes = yield from execute_calls(context, calls)
    return [outcome.model_dump(mode="json") for outcome in outcomes]
