"""Task-mode activities: choose tools, ask the planner, write the answer. LLM failures that retrying can fix raise
(Durable backs off); unusable replies come back as data for the repair round."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from activities.tracing import activity_span
from shared.errors import ModelBehaviorError, NotConfigured
from shared.llm.chat import (
    LLM_NOT_CONFIGURED_MESSAGE,
    ChatMessage,
    ChatModel,
    ChatResult,
    JsonSchemaFormat,
    Role,
    ToolSchema,
)
from shared.models import RetryPolicy, TokenUsage
from shared.runs.contracts import (
    LlmAnswerRequest,
    LlmPlanRequest,
    PreparedTask,
    PrepareTaskRequest,
    SearchToolsRequest,
)
from shared.runs.names import Activity
from shared.runs.task_planner import find_tools, plan_turn, write_answer
from shared.runtime import Runtime, get_runtime_async
from shared.telemetry import AZURE_OPENAI_PROVIDER, LlmCallSpan

bp = df.Blueprint()


def _model(runtime: Runtime) -> ChatModel:
    model = runtime.chat_model
    if model is None:
        raise NotConfigured(LLM_NOT_CONFIGURED_MESSAGE)
    return model


@bp.activity_trigger(input_name="request")
async def prepare_task(request: dict[str, Any], context: func.Context) -> dict[str, Any]:
    """The tools the planner starts with (tool search over the catalog, or the caller's list) and the settings."""
    runtime = await get_runtime_async()
    settings = runtime.settings
    asked = PrepareTaskRequest.model_validate(request)
    with activity_span(runtime.telemetry, context, Activity.PREPARE_TASK, asked.run_id):
        if asked.tools:
            await runtime.source_sync.ensure_async(asked.tools)
            tools = [name for name in asked.tools if name in runtime.catalog]
        else:
            tools = await _search(runtime, asked.task, settings.task_tools_k, asked.run_id)
    return PreparedTask(
        tools=tools, max_turns=settings.task_max_turns, search_k=settings.task_tools_k,
        approval_timeout_s=settings.approval_timeout_s, llm_retry=RetryPolicy(
            first_interval_ms=settings.llm_retry_interval_ms, max_attempts=settings.llm_retry_attempts),
    ).dump()


@bp.activity_trigger(input_name="request")
async def search_tools(request: dict[str, Any], context: func.Context) -> list[str]:
    """The names of the tools best matching the planner's query."""
    runtime = await get_runtime_async()
    asked = SearchToolsRequest.model_validate(request)
    with activity_span(runtime.telemetry, context, Activity.SEARCH_TOOLS, asked.run_id):
        return await _search(runtime, asked.query, asked.k, asked.run_id)


@bp.activity_trigger(input_name="request")
async def llm_plan(request: dict[str, Any], context: func.Context) -> dict[str, Any]:
    """One planner turn (:func:`shared.runs.task_planner.plan_turn`)."""
    runtime = await get_runtime_async()
    settings = runtime.settings
    asked = LlmPlanRequest.model_validate(request)
    with activity_span(runtime.telemetry, context, Activity.LLM_PLAN, asked.run_id):
        await runtime.source_sync.ensure_async(asked.tools)
        with _llm_span(runtime, "planner", asked.run_id) as span:
            reply = await asyncio.to_thread(plan_turn, asked, _Recorded(_model(runtime), span), runtime.catalog,
                                            settings.limits, settings.sandbox.max_tool_calls,
                                            settings.sandbox.max_code_bytes)
            _record(span, reply.usage, "ok" if reply.ok else ModelBehaviorError.code)
    return reply.dump()


@bp.activity_trigger(input_name="request")
async def llm_answer(request: dict[str, Any], context: func.Context) -> dict[str, Any]:
    """The worker model's answer (:func:`shared.runs.task_planner.write_answer`)."""
    runtime = await get_runtime_async()
    asked = LlmAnswerRequest.model_validate(request)
    with (activity_span(runtime.telemetry, context, Activity.LLM_ANSWER, asked.run_id),
          _llm_span(runtime, "worker", asked.run_id) as span):
        answer = await asyncio.to_thread(write_answer, asked, _Recorded(_model(runtime), span))
        _record(span, answer.usage, "ok")
    return answer.dump()


async def _search(runtime: Runtime, query: str, k: int, run_id: str | None) -> list[str]:
    with runtime.telemetry.search_span(k, len(runtime.catalog), run_id=run_id) as span:
        span.record_query(query)
        found = await asyncio.to_thread(lambda: find_tools(runtime.search_index, query, k))
        span.set_results(len(found))
    return found


def _llm_span(runtime: Runtime, role: Role, run_id: str | None) -> AbstractContextManager[LlmCallSpan]:
    llm = runtime.settings.llm
    return runtime.telemetry.llm_call_span(
        role, llm.deployments()[role], run_id=run_id, server_address=llm.server_address,
        provider=AZURE_OPENAI_PROVIDER if llm.provider == "azure_openai" else "openai")


class _Recorded:
    """The chat model, recording each call's messages, reply and reported model on the LLM span (the messages and
    the reply only with content capture on)."""

    def __init__(self, model: ChatModel, span: LlmCallSpan) -> None:
        self._model = model
        self._span = span

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        response_format: JsonSchemaFormat | None = None,
        tools: Sequence[ToolSchema] | None = None,
        role: Role = "planner",
    ) -> ChatResult:
        if self._span.capture_content:
            self._span.record_input_messages([message.to_wire() for message in messages])
        result = self._model.complete(messages, response_format=response_format, tools=tools, role=role)
        self._span.set_response(model=result.model, response_id=result.response_id,
                                finish_reasons=[result.finish_reason])
        if self._span.capture_content:
            self._span.record_output_messages([result.to_message().to_wire()])
        return result


def _record(span: LlmCallSpan, usage: TokenUsage, outcome: str) -> None:
    span.record_usage(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
    span.set_outcome(outcome)
