"""Code mode: LLM- or caller-written Python whose every tool call is a durable activity (replay), or inline."""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from orchestrations.approval import await_approval
from orchestrations.fan_out import execute_wide
from shared.errors import SandboxBusy
from shared.models import ErrorInfo, RunRequest, RunResult, RunStatus, StepRecord, ToolSpec
from shared.runs.code_run import CodeRun, seed_for
from shared.runs.step_calls import error_from_failure
from shared.sandbox import Capacity


def _run_inline(
    context: df.DurableOrchestrationContext, request: dict[str, Any], policy: dict[str, Any]
) -> Generator[Any, Any, dict[str, Any]]:
    """``run_code_inline``, tried again (after the policy's interval, on a durable timer) only when it failed with
    ``sandbox_busy``: then nothing ran. Any other failure may come after the code called tools, and running the
    code again would call them again, so it is final (Durable's own retry would retry every failure)."""
    attempts = int(policy["max_attempts"])
    for attempt in range(1, attempts + 1):
        try:
            return (yield context.call_activity("run_code_inline", request))
        except Exception as exc:
            if attempt == attempts or error_from_failure(str(exc)).code != SandboxBusy.code:
                raise
        interval = timedelta(milliseconds=int(policy["first_interval_ms"]))
        yield context.create_timer(context.current_utc_datetime + interval)
    raise AssertionError("unreachable")


def run_code_mode(context: df.DurableOrchestrationContext, request: RunRequest) -> Generator[Any, Any, RunResult]:
    """Replay loop: run the code from the start with the results so far; when it waits on new tool calls, fan them
    out as ``call_tool`` activities, record their outcomes and run it again, until it finishes (``max_rounds``).

    Replay steps are retried with the sandbox retry policy (a busy sandbox, a failed zygote: a replay step calls no
    tool itself); an inline run only when the sandbox was busy (see :func:`_run_inline`). When the last attempt
    fails too, the run ends ``failed`` with that error instead of failing the orchestration."""
    started = context.current_utc_datetime
    context.set_custom_status({"stage": "preparing", "mode": "code"})
    prepared = yield context.call_activity("prepare_code", {"tools": request.tools, "code": request.code})
    base = {"code": request.code, "tools": prepared["tools"], "limits": prepared["limits"], "run_id":
            context.instance_id}
    progress = CodeRun(context.instance_id, started)
    policy = prepared.get("sandbox_retry") or Capacity().retry_policy()  # histories from before the setting
    retry = df.RetryOptions(int(policy["first_interval_ms"]), int(policy["max_attempts"]))
    if prepared["approval_tools"] and context.parent_instance_id is None:  # a task approves its sub-runs
        refusal = yield from await_approval(context, prepared["approval_tools"], int(prepared["approval_timeout_s"]),
                                            "code")
        if refusal is not None:
            return progress.result(None, context.current_utc_datetime, refusal)
    if request.options.code_execution == "inline":
        try:
            outcome = yield from _run_inline(context, base, policy)
        except Exception as exc:  # Durable hands over only the message
            return progress.result(None, context.current_utc_datetime, error_from_failure(str(exc)))
        progress.records = [StepRecord.model_validate(r) for r in outcome.get("steps", [])]
        if outcome["status"] == "error":
            return progress.result(None, context.current_utc_datetime, ErrorInfo.model_validate(outcome["error"]))
        return progress.result(outcome, context.current_utc_datetime)
    specs = {name: ToolSpec.model_validate(spec) for name, spec in prepared["specs"].items()}
    max_rounds = int(prepared["limits"]["max_rounds"])
    step_input = {**base, "clock_iso": started.isoformat(), "seed": seed_for(context.instance_id)}
    for round_index in range(max_rounds + 1):
        context.set_custom_status({"stage": "executing", "mode": "code", "round": round_index,
                                   "done": len(progress.recorded), "total": len(progress.records)})
        try:
            step = yield context.call_activity_with_retry("run_code_step", retry,
                                                          {**step_input, "recorded": progress.recorded})
        except Exception as exc:  # every attempt failed (Durable hands over only the message)
            return progress.result(None, context.current_utc_datetime, error_from_failure(str(exc)))
        if step["status"] == "error":
            return progress.result(None, context.current_utc_datetime, ErrorInfo.model_validate(step["error"]))
        if step["status"] == "finished":
            return progress.result(step, context.current_utc_datetime)
        if round_index == max_rounds:
            break
        calls = progress.prepare(step, specs, context.current_utc_datetime)
        if calls:
            outcomes = yield from execute_wide(context, calls, int(prepared["max_fan_out"]),
                                               f"{context.instance_id}:round{round_index}")
            progress.record(outcomes, context.current_utc_datetime)
    error = ErrorInfo(code="sandbox_limit_exceeded", field="code",
                      message=f"the code was still waiting for tools after {max_rounds} rounds of tool calls "
                              "(WEFT_SANDBOX_MAX_ROUNDS); batch independent calls with asyncio.gather")
    result = progress.result(None, context.current_utc_datetime, error)
    result.status = RunStatus.FAILED
    return result
