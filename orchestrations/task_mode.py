"""Task mode: tool search → the planner decides → the plan or code runs as a durable sub-run → the worker answers."""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime
from typing import Any

import azure.durable_functions as df

from orchestrations.durable import retry_options
from shared.errors import ModelBehaviorError
from shared.models import RunRequest, RunResult, RunStatus
from shared.runs.contracts import LlmAnswerReply, LlmPlanReply, PreparedTask, PrepareTaskRequest
from shared.runs.custom_status import CustomStatus
from shared.runs.names import Activity, Orchestrator, Stage
from shared.runs.task_run import TaskRun
from shared.telemetry import telemetry_from_env


def run_task_mode(context: df.DurableOrchestrationContext, request: RunRequest) -> Generator[Any, Any, RunResult]:
    """The planner loop (:class:`TaskRun`). Each stage — ``search``, ``plan`` (one per planner call, retries
    included), ``execute`` (the sub-run, approvals of its calls included) and ``answer`` — is emitted as a
    ``weft.stage`` span when it ends."""
    started = context.current_utc_datetime
    otel = telemetry_from_env().orchestration(context)

    def stage_done(stage: str, since: datetime, outcome: str = "ok") -> None:
        otel.stage_finished(stage, "task", started_at=since, finished_at=context.current_utc_datetime, outcome=outcome)

    def show(stage: Stage, turn: int) -> None:
        context.set_custom_status(CustomStatus(stage=stage, mode="task", turn=turn).dump())

    assert request.task is not None
    context.set_custom_status(CustomStatus(stage=Stage.SEARCHING_TOOLS, mode="task").dump())
    prepared = PreparedTask.model_validate((yield context.call_activity(Activity.PREPARE_TASK, PrepareTaskRequest(
        task=request.task, tools=request.tools, run_id=context.instance_id).dump())))
    stage_done("search", started)
    retry = retry_options(prepared.llm_retry)
    task = TaskRun(context.instance_id, request, prepared, started)
    while not task.finished and (asking := task.plan_request()) is not None:
        show(Stage.PLANNING, task.turns + 1)
        since = context.current_utc_datetime
        reply = LlmPlanReply.model_validate((yield context.call_activity_with_retry(
            Activity.LLM_PLAN, retry, asking.dump())))
        stage_done("plan", since, "ok" if reply.ok else ModelBehaviorError.code)
        decision = task.planned(reply)
        if decision is None:
            continue
        since = context.current_utc_datetime
        if decision.action == "search_tools":
            task.tools_found((yield context.call_activity(Activity.SEARCH_TOOLS, task.search_request(decision).dump())))
            stage_done("search", since)
            continue
        # Calls of tools that need approval wait for it inside the sub-run, one call at a time; the task's status
        # names the sub-run so that GET /api/runs/{id} and the approve route reach it.
        context.set_custom_status(CustomStatus(stage=Stage.EXECUTING, mode="task", turn=task.turns,
                                               sub_run=task.sub_run_id()).dump())
        since = context.current_utc_datetime
        result = RunResult.model_validate((yield context.call_sub_orchestrator(
            Orchestrator.RUN, task.sub_run(decision).model_dump(mode="json"), task.sub_run_id())))
        stage_done("execute", since, "failed" if result.status == RunStatus.FAILED else "ok")
        if task.ran(decision, result):
            show(Stage.ANSWERING, task.turns)
            since = context.current_utc_datetime
            task.answered(LlmAnswerReply.model_validate((yield context.call_activity_with_retry(
                Activity.LLM_ANSWER, retry, task.answer_request().dump()))))
            stage_done("answer", since)
    return task.result(context.current_utc_datetime)
