"""Task mode: the LLM decides a plan, code or a direct answer; Weft checks it, executes it durably and the worker model
writes the answer.

The activities call :func:`plan_turn` (one planner call plus validation), :func:`write_answer` and
:func:`find_tools`; the orchestrator keeps the turn state in :class:`TaskState`, which is plain JSON data. A reply
that cannot be used comes back as ``ok: false`` with the exact problem, so the orchestrator can give the model one
repair round; throttling raises :class:`~shared.errors.UpstreamUnavailable` so Durable retries back off without
holding a worker.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.catalog.catalog import Catalog, python_identifier
from shared.errors import InvalidRequest, ModelBehaviorError, SandboxViolation
from shared.llm.chat import ChatMessage, ChatModel, JsonSchemaFormat, Usage, load_prompt, render_prompt
from shared.models import ModelLimits, Plan, TokenUsage, parse_model
from shared.runs.plan import check_plan
from shared.sandbox.policy import ALLOWED_MODULES, check_code

__all__ = [
    "PLANNER_SCHEMA",
    "PlannerReply",
    "TaskState",
    "add_usage",
    "find_tools",
    "plan_turn",
    "render_tools",
    "tools_needing_approval",
    "write_answer",
]

Style = Literal["plan", "code"]
_MAX_RESULT_CHARS = 24_000

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


class PlannerReply(BaseModel):
    """What the planner decided, after validation."""

    action: Literal["plan", "code", "answer", "search_tools"]
    plan: Plan | None = None
    code: str | None = None
    answer: str | None = None
    query: str | None = None
    final: bool = True


class TaskState(BaseModel):
    """The orchestrator's view of a task run between turns (JSON data, replay-safe)."""

    tools: list[str] = Field(default_factory=list)
    """Tools the planner may use (search results, plus tools loaded on demand)."""
    transcript: list[dict[str, Any]] = Field(default_factory=list)
    """The conversation with the planner so far: its replies and the results shown to it."""
    results: list[dict[str, Any]] = Field(default_factory=list)
    """Outcomes of every tool call made so far, as shown to the models."""
    usage: TokenUsage = Field(default_factory=TokenUsage)
    turns: int = 0


def add_usage(total: TokenUsage, usage: Mapping[str, Any] | None) -> TokenUsage:
    """``total`` plus one call's usage (``Usage.to_dict`` shape)."""
    if not usage:
        return total
    return TokenUsage(
        prompt_tokens=total.prompt_tokens + int(usage.get("prompt_tokens", 0)),
        completion_tokens=total.completion_tokens + int(usage.get("completion_tokens", 0)),
        cached_tokens=total.cached_tokens + int(usage.get("cached_tokens", 0)),
    )


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
        problems, _ = check_plan(reply.plan, allowed)
        if problems:
            raise InvalidRequest("; ".join(f"{p.field}: {p.message}" for p in problems[:10]), field=problems[0].field)
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


def plan_turn(request: Mapping[str, Any], model: ChatModel, catalog: Catalog, limits: ModelLimits,
              max_tool_calls: int, max_code_bytes: int) -> dict[str, Any]:
    """One planner call: ``{"ok", "reply"|"error", "raw", "usage"}``. Throttling and outages raise (retryable)."""
    style: Style = request["style"]
    tools: list[str] = request["tools"]
    messages = [ChatMessage.system(_system_prompt(catalog, tools, style, limits, max_tool_calls)),
                ChatMessage.user(request["task"])]
    for turn in request.get("transcript", []):
        if turn["role"] == "assistant":
            messages.append(ChatMessage.assistant(turn["content"]))
        elif turn["role"] == "results":
            messages.append(ChatMessage.user(render_prompt("task_results", results=results_text(turn["results"]))))
        else:
            messages.append(ChatMessage.user(turn["content"]))
    if request.get("repair"):
        messages.append(ChatMessage.assistant(request["repair"]["raw"]))
        messages.append(ChatMessage.user(render_prompt("repair", error=request["repair"]["error"])))
    usage = Usage()
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
        return {"ok": False, "error": exc.message, "raw": raw, "usage": usage.to_dict()}
    except (InvalidRequest, SandboxViolation) as exc:
        where = f" (at {exc.field})" if exc.field else ""
        return {"ok": False, "error": f"{exc.message}{where}", "raw": raw, "usage": usage.to_dict()}
    return {"ok": True, "reply": reply.model_dump(mode="json"), "raw": raw, "usage": usage.to_dict(),
            "approval_tools": tools_needing_approval(reply, catalog, tools)}


def tools_needing_approval(reply: PlannerReply, catalog: Catalog, tools: Sequence[str]) -> list[str]:
    """Tools marked ``requires_approval`` that the plan calls, or that the code mentions by name."""
    if reply.plan is not None:
        used = {step.tool for step in reply.plan.steps}
    elif reply.code:
        names = {node.id for node in ast.walk(ast.parse(reply.code)) if isinstance(node, ast.Name)}
        used = {tool for tool in tools if python_identifier(tool) in names}
    else:
        return []
    return sorted(tool for tool in used if tool in catalog and catalog.get(tool).spec.requires_approval)


def results_text(results: Sequence[Mapping[str, Any]]) -> str:
    """Tool results as JSON for a model, cut to a size that fits a prompt."""
    text = json.dumps(list(results), ensure_ascii=False, default=str)
    return text if len(text) <= _MAX_RESULT_CHARS else text[:_MAX_RESULT_CHARS] + " …(cut)"


def write_answer(request: Mapping[str, Any], model: ChatModel) -> dict[str, Any]:
    """The worker model's answer from the task and the tool results: ``{"answer", "usage"}``."""
    results = results_text(request["results"])
    messages = [ChatMessage.system(load_prompt("answer")),
                ChatMessage.user(f"Task:\n{request['task']}\n\nTool results (JSON):\n{results}")]
    result = model.complete(messages, role="worker")
    return {"answer": (result.content or "").strip(), "usage": result.usage.to_dict()}


def find_tools(retrieve: Any, query: str, k: int) -> list[str]:
    """Names of the ``k`` best tools for ``query`` from a retriever (``search(query, k) -> [ToolHit]``)."""
    return [hit.name for hit in retrieve.search(query, k)]
