"""Task mode: tool search → the planner decides → the plan or code runs as a durable sub-run → the worker answers."""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime
from typing import Any

import azure.durable_functions as df

from orchestrations.approval import await_approval
from shared.models import ErrorInfo, RunRequest, RunResult, RunStatus, StepRecord
from shared.runs.task_planner import PlannerReply, TaskState, add_usage
from shared.telemetry import telemetry_from_env


def run_task_mode(context: df.DurableOrchestrationContext, request: RunRequest) -> Generator[Any, Any, RunResult]:
    """The planner loop. Each stage — ``search``, ``plan`` (one per planner call, retries included), ``approval``,
    ``execute`` (the sub-run) and ``answer`` — is emitted as a ``weft.stage`` span when it ends."""
    started = context.current_utc_datetime
    run_id = context.instance_id
    otel = telemetry_from_env().orchestration(context)

    def stage_done(stage: str, since: datetime, outcome: str = "ok") -> None:
        otel.stage_finished(stage, "task", started_at=since, finished_at=context.current_utc_datetime, outcome=outcome)

    context.set_custom_status({"stage": "searching_tools", "mode": "task"})
    prepared = yield context.call_activity("prepare_task", {"task": request.task, "tools": request.tools,
                                                            "run_id": run_id})
    stage_done("search", started)
    retry = df.RetryOptions(prepared["llm_retry"]["first_interval_ms"], prepared["llm_retry"]["max_attempts"])
    style = request.options.task_style
    state = TaskState(tools=prepared["tools"])
    steps: list[StepRecord] = []
    answer: str | None = None
    error: ErrorInfo | None = None
    repair: dict[str, str] | None = None
    status = RunStatus.COMPLETED
    while answer is None and error is None:
        if state.turns >= int(prepared["max_turns"]):
            error = ErrorInfo(code="max_turns", message=f"no answer after {state.turns} planner turns "
                              "(WEFT_TASK_MAX_TURNS)")
            break
        context.set_custom_status({"stage": "planning", "mode": "task", "turn": state.turns + 1})
        since = context.current_utc_datetime
        reply = yield context.call_activity_with_retry("llm_plan", retry, {
            "task": request.task, "style": style, "tools": state.tools, "transcript": state.transcript,
            "repair": repair, "run_id": run_id})
        stage_done("plan", since, "ok" if reply["ok"] else "model_behavior_error")
        state.usage = add_usage(state.usage, reply.get("usage"))
        if not reply["ok"]:
            if repair is not None:
                error = ErrorInfo(code="model_behavior_error", field="task",
                                  message="the model's reply could not be used, even after a repair round: "
                                  + reply["error"])
                break
            repair = {"raw": reply["raw"], "error": reply["error"]}
            continue
        repair = None
        decision = PlannerReply.model_validate(reply["reply"])
        state.turns += 1
        state.transcript.append({"role": "assistant", "content": reply["raw"]})
        if decision.action == "answer":
            answer = decision.answer
            break
        if decision.action == "search_tools":
            since = context.current_utc_datetime
            found = yield context.call_activity("search_tools", {"query": decision.query, "k": prepared["search_k"],
                                                                 "run_id": run_id})
            stage_done("search", since)
            added = [name for name in found if name not in state.tools]
            state.tools.extend(added)
            state.transcript.append({"role": "user", "content": "Tools loaded: " + (", ".join(added) or "none new")
                                     + ". They are now listed in the tools above."})
            continue
        if reply.get("approval_tools"):
            since = context.current_utc_datetime
            refusal = yield from await_approval(context, reply["approval_tools"], int(prepared["approval_timeout_s"]))
            stage_done("approval", since, "ok" if refusal is None else refusal.code)
            if refusal is not None:
                error, status = refusal, RunStatus.FAILED
                break
        context.set_custom_status({"stage": "executing", "mode": "task", "turn": state.turns})
        sub = RunRequest(mode=decision.action, plan=decision.plan, code=decision.code,
                         tools=state.tools if decision.action == "code" else None, options=request.options)
        since = context.current_utc_datetime
        outcome = yield context.call_sub_orchestrator("run", sub.model_dump(mode="json"),
                                                      f"{context.instance_id}:turn{state.turns}")
        result = RunResult.model_validate(outcome)
        stage_done("execute", since, "failed" if result.status == RunStatus.FAILED else "ok")
        for record in result.steps:
            steps.append(record.model_copy(update={"step_id": f"turn{state.turns}.{record.step_id}"}))
        shown = [{"step": r.step_id, "tool": r.tool, "status": r.status.value, "result": r.result,
                  "error": r.error.message if r.error else None} for r in result.steps]
        if result.output is not None and decision.action == "code":
            shown.append({"code_result": result.output})
        shown += [{"error": e.message} for e in result.errors if e.code not in ("step_failed", "tool_failed")]
        state.results.extend(shown)
        state.transcript.append({"role": "results", "results": shown})
        if decision.final or state.turns >= int(prepared["max_turns"]):
            context.set_custom_status({"stage": "answering", "mode": "task", "turn": state.turns})
            since = context.current_utc_datetime
            written = yield context.call_activity_with_retry("llm_answer", retry, {
                "task": request.task, "results": state.results, "run_id": run_id})
            stage_done("answer", since)
            state.usage = add_usage(state.usage, written.get("usage"))
            answer = written["answer"]
    if error is not None:
        status = RunStatus.FAILED
    elif any(s.status.value == "failed" for s in steps):
        status = RunStatus.COMPLETED_WITH_ERRORS
    elapsed = round((context.current_utc_datetime - started).total_seconds() * 1000.0, 3)
    return RunResult(run_id=context.instance_id, mode="task", status=status, steps=steps,
                     output={"answer": answer, "turns": state.turns, "tools": state.tools},
                     errors=[error] if error else [], usage=state.usage, elapsed_ms=elapsed)
