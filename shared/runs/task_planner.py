"""Task mode: the LLM decides a plan, code or a direct answer; Weft checks it, executes it durably and the worker model
writes the answer.

The activities call :func:`plan_turn` (one planner call plus validation), :func:`write_answer` and
:func:`find_tools`; the orchestrator keeps the turn state in :class:`~shared.runs.task_run.TaskRun`. A reply that
cannot be used comes back as ``ok: false`` with the exact problem, so the orchestrator can give the model one
repair round; throttling raises :class:`~shared.errors.UpstreamUnavailable` so Durable retries back off without
holding a worker.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from shared.catalog.catalog import Catalog
from shared.errors import InvalidRequest, ModelBehaviorError, SandboxViolation
from shared.llm.chat import ChatMessage, ChatModel, JsonSchemaFormat, load_prompt, render_prompt
from shared.models import ModelLimits, TokenUsage, parse_model
from shared.runs.contracts import (
    LlmAnswerReply,
    LlmAnswerRequest,
    LlmPlanReply,
    LlmPlanRequest,
    PlannerReply,
    TaskStyle,
)
from shared.runs.plan import check_plan
from shared.sandbox.policy import ALLOWED_MODULES, check_code

__all__ = ["PLANNER_SCHEMA", "find_tools", "plan_turn", "render_tools", "results_text", "write_answer"]

Style = TaskStyle
_MAX_RESULT_CHARS = 24_000
_REPAIR_PROBLEMS = 10
"""Plan problems a repair round shows the planner (the first ones: checking stops there)."""

PLANNER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "action": {"type": "string", "enum": ["plan", "code", "answer", "search_tools"]},
        "plan": {"type": ["object", "null"]},
        "code": {"type": ["string", "null"]},
        "answer": {"type": ["string", "null"]},
        "query": {"type": ["string", "null"]},
        "final": {"type": ["boolean", "null"]},
    },
    "required": ["action"],
    "additionalProperties": False,
}


def render_tools(catalog: Catalog, names: Sequence[str], style: Style) -> str:
    """Tools as the planner sees them: compact JSON schemas for plans, Python stubs with docstrings for code."""
    if style == "code":
        return "\n\n".join(catalog.render_python_stub(name) for name in names if name in catalog)
    lines = []
    for name in names:
        if name not in catalog:
            continue
        spec = catalog.get(name).spec
        summary = spec.description.strip().split("\n\n")[0].replace("\n", " ")
        lines.append(json.dumps({"name": spec.name, "description": summary, "parameters": spec.parameters},
                                separators=(",", ":")))
    return "\n".join(lines)


def _system_prompt(catalog: Catalog, names: Sequence[str], style: Style, limits: ModelLimits,
                   max_tool_calls: int) -> str:
    if style == "code":
        rules = render_prompt("task_style_code", allowed_modules=", ".join(m for m in ALLOWED_MODULES
                                                                           if m != "__future__"),
                              max_tool_calls=str(max_tool_calls))
    else:
        rules = render_prompt("task_style_plan", max_steps=str(min(limits.max_steps, 50)))
    return render_prompt("task_planner", style=style, style_rules=rules, tools=render_tools(catalog, names, style))


def _validate(reply: PlannerReply, style: Style, catalog: Catalog, tools: Sequence[str], max_code_bytes: int) -> None:
    """Raise ``InvalidRequest``/``SandboxViolation`` with the exact problem for the repair round."""
    if reply.action == "plan":
        if style != "plan" or reply.plan is None:
            raise InvalidRequest(f"reply with action {style!r} and a {style!r} field", field="action")
        allowed = {name: catalog.get(name).spec for name in tools if name in catalog}
        problems, _ = check_plan(reply.plan, allowed, max_problems=_REPAIR_PROBLEMS)
        if problems:
            raise InvalidRequest("; ".join(f"{p.field}: {p.message}" for p in problems), field=problems[0].field)
    elif reply.action == "code":
        if style != "code" or not reply.code:
            raise InvalidRequest(f"reply with action {style!r} and a {style!r} field", field="action")
        try:
            check_code(reply.code, max_code_bytes=max_code_bytes)
        except SyntaxError as exc:
            raise InvalidRequest(f"the code does not parse: {exc.msg} (line {exc.lineno})", field="code") from None
    elif reply.action == "answer" and not (reply.answer or "").strip():
        raise InvalidRequest("an answer action needs a non-empty answer", field="answer")
    elif reply.action == "search_tools" and not (reply.query or "").strip():
        raise InvalidRequest("a search_tools action needs a query", field="query")


def plan_turn(request: LlmPlanRequest, model: ChatModel, catalog: Catalog, limits: ModelLimits,
              max_tool_calls: int, max_code_bytes: int) -> LlmPlanReply:
    """One planner call, checked: the decision, or what is wrong with it. Throttling and outages raise (retryable)."""
    style, tools = request.style, request.tools
    messages = [ChatMessage.system(_system_prompt(catalog, tools, style, limits, max_tool_calls)),
                ChatMessage.user(request.task)]
    for turn in request.transcript:
        if turn.role == "assistant":
            messages.append(ChatMessage.assistant(turn.content or ""))
        elif turn.role == "results":
            messages.append(ChatMessage.user(render_prompt("task_results", results=results_text(turn.results or []))))
        else:
            messages.append(ChatMessage.user(turn.content or ""))
    if request.repair is not None:
        messages.append(ChatMessage.assistant(request.repair.raw))
        messages.append(ChatMessage.user(render_prompt("repair", error=request.repair.error)))
    usage = TokenUsage()
    raw = ""
    try:
        result = model.complete(messages, response_format=JsonSchemaFormat("planner_reply", PLANNER_SCHEMA,
                                                                           strict=False), role="planner")
        usage = result.usage
        raw = result.content or ""
        reply = parse_model(PlannerReply, result.parsed if result.parsed is not None else raw)
        _validate(reply, style, catalog, tools, max_code_bytes)
    except ModelBehaviorError as exc:
        usage = getattr(exc, "usage", usage)
        return LlmPlanReply(ok=False, error=exc.message, raw=raw, usage=usage)
    except (InvalidRequest, SandboxViolation) as exc:
        where = f" (at {exc.field})" if exc.field else ""
        return LlmPlanReply(ok=False, error=f"{exc.message}{where}", raw=raw, usage=usage)
    return LlmPlanReply(ok=True, reply=reply, raw=raw, usage=usage)


def results_text(results: Sequence[Mapping[str, Any]]) -> str:
    """Tool results as JSON for a model, cut to a size that fits a prompt."""
    text = json.dumps(list(results), ensure_ascii=False, default=str)
    return text if len(text) <= _MAX_RESULT_CHARS else text[:_MAX_RESULT_CHARS] + " …(cut)"


def write_answer(request: LlmAnswerRequest, model: ChatModel) -> LlmAnswerReply:
    """The worker model's answer from the task and the tool results."""
    results = results_text(request.results)
    messages = [ChatMessage.system(load_prompt("answer")),
                ChatMessage.user(f"Task:\n{request.task}\n\nTool results (JSON):\n{results}")]
    result = model.complete(messages, role="worker")
    return LlmAnswerReply(answer=(result.content or "").strip(), usage=result.usage)


def find_tools(retrieve: Any, query: str, k: int) -> list[str]:
    """Names of the ``k`` best tools for ``query`` from a retriever (``search(query, k) -> [ToolHit]``)."""
    return [hit.name for hit in retrieve.search(query, k)]
