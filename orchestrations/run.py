"""The ``run`` orchestrator: one entry for every mode; plan mode runs a DAG of tool calls level by level."""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from orchestrations.approval import gate_calls
from orchestrations.code_mode import run_code_mode
from orchestrations.fan_out import execute_wide
from orchestrations.task_mode import run_task_mode
from shared.errors import ApprovalDenied
from shared.models import ErrorInfo, RunRequest, RunResult, StepStatus
from shared.runs.contracts import CustomStatus, PreparedPlan
from shared.runs.names import Activity, Stage
from shared.runs.plan_run import PlanRun
from shared.telemetry import telemetry_from_env

bp = df.Blueprint()


@bp.orchestration_trigger(context_name="context")
def run(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """Input: a :class:`RunRequest` (validated by the trigger). Output: a :class:`RunResult`."""
    otel = telemetry_from_env().orchestration(context)  # configures this process's telemetry on first use
    request = RunRequest.model_validate(context.get_input())
    started = context.current_utc_datetime
    if request.mode == "plan":
        result = yield from run_plan(context, request)
    elif request.mode == "code":
        result = yield from run_code_mode(context, request)
    else:
        result = yield from run_task_mode(context, request)
    if context.parent_instance_id is None:  # sub-runs of a task are counted in their task's run
        otel.run_finished(
            request.mode, result.status.value, started_at=started, finished_at=context.current_utc_datetime)
    finished = sum(s.status in (StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED) for s in result.steps)
    context.set_custom_status(CustomStatus(
        stage=Stage.DONE, status=result.status.value, done=finished, total=len(result.steps),
        failed=sum(s.status == StepStatus.FAILED for s in result.steps),
        skipped=sum(s.status == StepStatus.SKIPPED for s in result.steps), elapsed_ms=result.elapsed_ms).dump())
    return result.model_dump(mode="json")


def run_plan(context: df.DurableOrchestrationContext, request: RunRequest) -> Generator[Any, Any, RunResult]:
    started = context.current_utc_datetime
    assert request.plan is not None
    context.set_custom_status(CustomStatus(stage=Stage.VALIDATING, mode="plan").dump())
    prepared = PreparedPlan.model_validate((yield context.call_activity(
        Activity.PREPARE_PLAN, request.plan.model_dump(mode="json"))))
    progress = PlanRun(context.instance_id, request.plan, prepared.specs, request.options, started)
    timeout_s = request.options.timeout_s
    deadline = started + dt.timedelta(seconds=timeout_s) if timeout_s is not None else None
    for index, level in enumerate(progress.levels):
        calls = progress.prepare(level, context.current_utc_datetime)
        calls, refused = yield from gate_calls(context, calls, prepared.specs, prepared.approval_timeout_s, "plan")
        if refused:  # a human said no (or nobody answered): the run stops there
            progress.record(refused, context.current_utc_datetime)
            return progress.stopped(refused[0].result.error or ErrorInfo.of(ApprovalDenied, "not approved"),
                                    context.current_utc_datetime)
        context.set_custom_status(progress.status(context.current_utc_datetime).dump())
        if not calls:
            continue
        width = request.options.max_parallel or len(calls)
        for start in range(0, len(calls), width):  # max_parallel: at most that many calls in flight
            progress.mark_started(calls[start : start + width], context.current_utc_datetime)
            outcomes = yield from execute_wide(
                context, calls[start : start + width], prepared.max_fan_out,
                f"{context.instance_id}:level{index}:{start}", deadline,
            )
            progress.record(outcomes, context.current_utc_datetime)
    return progress.result(context.current_utc_datetime)
