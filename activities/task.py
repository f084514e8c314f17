"""Task-mode activities: choose tools, ask the planner, write the answer. LLM failures that retrying can fix raise
(Durable backs off); unusable replies come back as data for the repair round."""

from __future__ import annotations

import asyncio
from typing import Any

import azure.durable_functions as df

from shared.errors import NotConfigured
from shared.llm import LLM_NOT_CONFIGURED_MESSAGE
from shared.runtime import Runtime, get_runtime
from shared.task import find_tools, plan_turn, write_answer

bp = df.Blueprint()


def _model(runtime: Runtime) -> Any:
    model = runtime.chat_model
    if model is None:
        raise NotConfigured(LLM_NOT_CONFIGURED_MESSAGE)
    return model


@bp.activity_trigger(input_name="request")
async def prepare_task(request: dict[str, Any]) -> dict[str, Any]:
    """The tools the planner starts with (tool search over the catalog, or the caller's list) and the settings."""
    runtime = get_runtime()
    settings = runtime.settings
    if request.get("tools"):
        await runtime.source_sync.ensure_async(request["tools"])
        tools = [name for name in request["tools"] if name in runtime.catalog]
    else:
        tools = await asyncio.to_thread(find_tools, runtime.search_index, request["task"], settings.task_tools_k)
    return {"tools": tools, "max_turns": settings.task_max_turns, "search_k": settings.task_tools_k,
            "approval_timeout_s": settings.approval_timeout_s,
            "llm_retry": {"first_interval_ms": settings.llm_retry_interval_ms,
                          "max_attempts": settings.llm_retry_attempts}}


@bp.activity_trigger(input_name="request")
async def search_tools(request: dict[str, Any]) -> list[str]:
    runtime = get_runtime()
    with runtime.telemetry.search_span(int(request["k"]), len(runtime.catalog)) as span:
        found = await asyncio.to_thread(find_tools, runtime.search_index, request["query"], int(request["k"]))
        span.set_results(len(found))
    return found


@bp.activity_trigger(input_name="request")
async def llm_plan(request: dict[str, Any]) -> dict[str, Any]:
    runtime = get_runtime()
    await runtime.source_sync.ensure_async(request.get("tools") or ())
    limits = runtime.settings
    with runtime.telemetry.llm_call_span("planner", runtime.settings.llm.deployments()["planner"]) as span:
        reply = await asyncio.to_thread(plan_turn, request, _model(runtime), runtime.catalog, limits.limits,
                                        limits.sandbox.max_tool_calls, limits.sandbox.max_code_bytes)
        _record(span, reply.get("usage"), "ok" if reply["ok"] else "model_behavior_error")
    return reply


@bp.activity_trigger(input_name="request")
async def llm_answer(request: dict[str, Any]) -> dict[str, Any]:
    runtime = get_runtime()
    with runtime.telemetry.llm_call_span("worker", runtime.settings.llm.deployments()["worker"]) as span:
        answer = await asyncio.to_thread(write_answer, request, _model(runtime))
        _record(span, answer.get("usage"), "ok")
    return answer


def _record(span: Any, usage: dict[str, Any] | None, outcome: str) -> None:
    usage = usage or {}
    span.record_usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)),
                      int(usage.get("cached_tokens", 0)))
    span.set_outcome(outcome)
