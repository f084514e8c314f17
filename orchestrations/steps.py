"""Executing a batch of tool calls as Durable activities: retries, fan-out width, failures kept per call."""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskState

from shared.models import ToolResult
from shared.steps import StepCall, StepOutcome, error_from_failure

bp = df.Blueprint()


def execute_calls(
    context: df.DurableOrchestrationContext, calls: list[StepCall]
) -> Generator[Any, Any, list[StepOutcome]]:
    """Run ``calls`` in parallel as ``call_tool`` activities with each tool's retry policy.

    ``task_all`` stops at the first failure, so the remaining tasks are awaited again until every call has an
    outcome: one failed call never hides the others' results.
    """
    tasks = [
        context.call_activity_with_retry(
            "call_tool",
            df.RetryOptions(call.retry.first_interval_ms, call.retry.max_attempts),
            call.model_dump(mode="json"),
        )
        for call in calls
    ]
    while True:
        pending = [task for task in tasks if task.state == TaskState.RUNNING]
        if not pending:
            break
        with contextlib.suppress(Exception):  # each task's failure is read below
            yield context.task_all(pending)
    outcomes = []
    for call, task in zip(calls, tasks, strict=True):
        attempts = int(getattr(task, "num_attempts", 1))
        if task.state == TaskState.SUCCEEDED:
            result = ToolResult.model_validate(task.result)
        else:
            result = ToolResult(ok=False, error=error_from_failure(str(task.result)))
        outcomes.append(StepOutcome(step_id=call.call.step_id, result=result, attempts=attempts))
    return outcomes


def execute_wide(
    context: df.DurableOrchestrationContext, calls: list[StepCall], max_fan_out: int, chunk_prefix: str
) -> Generator[Any, Any, list[StepOutcome]]:
    """:func:`execute_calls`, split into ``run_steps`` sub-orchestrations of at most ``max_fan_out`` calls."""
    if len(calls) <= max_fan_out:
        return (yield from execute_calls(context, calls))
    chunks = [calls[i : i + max_fan_out] for i in range(0, len(calls), max_fan_out)]
    children = [
        context.call_sub_orchestrator(
            "run_steps", [call.model_dump(mode="json") for call in chunk], f"{chunk_prefix}:{index}"
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
