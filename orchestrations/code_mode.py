"""Code mode: LLM- or caller-written Python whose every tool call is a durable activity (replay), or inline."""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from orchestrations.approval import gate_calls
from orchestrations.durable import retry_options
from orchestrations.fan_out import execute_wide
from shared.errors import SandboxBusy, SandboxLimitExceeded
from shared.models import ErrorInfo, RetryPolicy, RunRequest, RunResult, RunStatus
from shared.runs.code_run import CodeRun, seed_for
from shared.runs.contracts import CodeOutcome, CodeRunRequest, CodeStepRequest, PrepareCodeRequest, PreparedCode
from shared.runs.custom_status import CustomStatus
from shared.runs.names import Activity, Stage
from shared.runs.step_calls import error_from_failure


def _run_inline(
    context: df.DurableOrchestrationContext, request: CodeRunRequest, policy: RetryPolicy
) -> Generator[Any, Any, CodeOutcome]:
    """``run_code_inline``, tried again (after the policy's interval, on a durable timer) only when it failed with
    ``sandbox_busy``: then nothing ran. Any other failure may come after the code called tools, and running the
    code again would call them again, so it is final (Durable's own retry would retry every failure)."""
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return CodeOutcome.model_validate((yield context.call_activity(Activity.RUN_CODE_INLINE, request.dump())))
        except Exception as exc:
            if attempt == policy.max_attempts or error_from_failure(str(exc)).code != SandboxBusy.code:
                raise
        interval = timedelta(milliseconds=policy.first_interval_ms)
        yield context.create_timer(context.current_utc_datetime + interval)
    raise AssertionError("unreachable")


def run_code_mode(context: df.DurableOrchestrationContext, request: RunRequest) -> Generator[Any, Any, RunResult]:
    """Replay loop: run the code from the start with the results so far; when it waits on new tool calls, fan them
    out as ``call_tool`` activities, record their outcomes and run it again, until it finishes (``max_rounds``).

    Replay steps are retried with the sandbox retry policy (a busy sandbox, a failed zygote: a replay step calls no
    tool itself); an inline run only when the sandbox was busy (see :func:`_run_inline`). When the last attempt
    fails too, the run ends ``failed`` with that error instead of failing the orchestration."""
    started = context.current_utc_datetime
    assert request.code is not None
    context.set_custom_status(CustomStatus(stage=Stage.PREPARING, mode="code").dump())
    prepared = PreparedCode.model_validate((yield context.call_activity(
        Activity.PREPARE_CODE, PrepareCodeRequest(tools=request.tools, code=request.code).dump())))
    base = CodeRunRequest(code=request.code, tools=prepared.tools, limits=prepared.limits, run_id=context.instance_id)
    progress = CodeRun(context.instance_id, started)
    if request.options.code_execution == "inline":
        try:
            outcome = yield from _run_inline(context, base, prepared.sandbox_retry)
        except Exception as exc:  # Durable hands over only the message
            return progress.result(None, context.current_utc_datetime, error_from_failure(str(exc)))
        if outcome.status != "approval_required":
            progress.records = list(outcome.steps)
            if outcome.failure is not None:
                return progress.result(None, context.current_utc_datetime, outcome.failure)
            return progress.result(outcome, context.current_utc_datetime)
        # The code reached a tool that needs approval: the inline run stopped before it. Go on by replay from the
        # calls that ran (they are never run again), so the approval can wait on a durable timer, not a worker.
        progress.resume(outcome, context.current_utc_datetime)
    retry = retry_options(prepared.sandbox_retry)
    step_input = CodeStepRequest(**base.model_dump(), clock_iso=started.isoformat(), seed=seed_for(context.instance_id))
    for round_index in range(prepared.max_rounds + 1):
        context.set_custom_status(progress.status(round_index).dump())
        step_input.recorded = progress.recorded
        try:
            step = CodeOutcome.model_validate((yield context.call_activity_with_retry(
                Activity.RUN_CODE_STEP, retry, step_input.dump())))
        except Exception as exc:  # every attempt failed (Durable hands over only the message)
            return progress.result(None, context.current_utc_datetime, error_from_failure(str(exc)))
        if step.failure is not None:
            return progress.result(None, context.current_utc_datetime, step.failure)
        if step.status == "finished":
            return progress.result(step, context.current_utc_datetime)
        if round_index == prepared.max_rounds:
            break
        calls = progress.prepare(step, prepared.specs, context.current_utc_datetime)
        calls, refused = yield from gate_calls(context, calls, prepared.specs, prepared.approval_timeout_s, "code")
        if refused:  # a human said no (or nobody answered): the run stops there, the code does not go round it
            progress.record(refused, context.current_utc_datetime)
            return progress.result(None, context.current_utc_datetime, refused[0].result.error)
        if calls:
            outcomes = yield from execute_wide(context, calls, prepared.max_fan_out,
                                               f"{context.instance_id}:round{round_index}")
            progress.record(outcomes, context.current_utc_datetime)
    error = ErrorInfo.of(SandboxLimitExceeded, f"the code was still waiting for tools after {prepared.max_rounds} "
                         "rounds of tool calls (WEFT_SANDBOX_MAX_ROUNDS); batch independent calls with asyncio.gather",
                         field="code")
    result = progress.result(None, context.current_utc_datetime, error)
    result.status = RunStatus.FAILED
    return result
