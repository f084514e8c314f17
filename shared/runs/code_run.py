"""Code mode: the core behind the ``run_code_step``/``run_code_inline`` activities and the bookkeeping of a durable
code run (what the orchestrator records between replay steps).

Tools appear in the code as async functions named after them (dots and dashes become underscores). Calls may pass
arguments by position (in the order of the tool's parameters) or by name; they are turned into named arguments
before they become ``call_tool`` activities, so each one is validated, retried and recorded like a plan step.
"""

from __future__ import annotations

import ast
import asyncio
import difflib
import hashlib
import itertools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.catalog.catalog import Catalog, python_identifier
from shared.catalog.executor import ToolExecutor
from shared.errors import InvalidRequest, SandboxBusy, WeftError, is_retryable
from shared.models import (
    ErrorInfo,
    RunResult,
    RunStatus,
    StepRecord,
    StepStatus,
    ToolCall,
    ToolResult,
    ToolSpec,
    hash_args,
)
from shared.payloads import PayloadStore
from shared.runs.step_calls import RetryableActivityError, StepCall, StepOutcome, offloaded, offloaded_ref
from shared.sandbox import CodeExecutor, CodeResult, Limits, PendingCall, RecordedCall, ReplayStep
from shared.telemetry import Telemetry

__all__ = [
    "CodeRun",
    "code_tools",
    "named_arguments",
    "run_inline",
    "run_step",
    "seed_for",
    "tools_needing_approval",
]


def code_tools(catalog: Catalog, names: Sequence[str] | None) -> dict[str, str]:
    """``{python name: tool name}`` for the tools the code may call (all of the catalog when ``names`` is None)."""
    chosen = list(names) if names is not None else catalog.names()
    mapping: dict[str, str] = {}
    for index, name in enumerate(chosen):
        if name not in catalog:
            close = difflib.get_close_matches(name, catalog.names(), n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise InvalidRequest(f"unknown tool {name!r}{hint}", field=f"tools[{index}]")
        mapping[python_identifier(name)] = name
    return mapping


def tools_needing_approval(code: str, tools: Mapping[str, str], catalog: Catalog) -> list[str]:
    """Tools marked ``requires_approval`` whose names the code mentions (``tools``: python name → tool name)."""
    try:
        names = {node.id for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Name)}
    except SyntaxError:
        return []
    return sorted(tool for py_name, tool in tools.items()
                  if py_name in names and catalog.get(tool).spec.requires_approval)


def named_arguments(spec: ToolSpec, call: PendingCall) -> dict[str, Any]:
    """The call's arguments by name: positional ones take the tool's parameters in order."""
    order = list((spec.parameters.get("properties") or {}).keys())
    if len(call.args) > len(order):
        raise InvalidRequest(
            f"{spec.name}() takes at most {len(order)} positional arguments ({', '.join(order)}), "
            f"{len(call.args)} were given", field="args")
    named = dict(zip(order, call.args, strict=False))
    for key, value in call.kwargs.items():
        if key in named:
            raise InvalidRequest(f"{spec.name}() got multiple values for argument {key!r}", field=f"args.{key}")
        named[key] = value
    return named


def seed_for(run_id: str) -> int:
    """The seed of the code's ``random``: fixed per run, so every replay sees the same numbers."""
    return int(hashlib.sha256(run_id.encode()).hexdigest()[:8], 16)


def _load_offloaded(recorded: Sequence[dict[str, Any]], payloads: PayloadStore) -> list[RecordedCall]:
    calls = []
    for item in recorded:
        ref = offloaded_ref(item.get("result"))
        calls.append(RecordedCall.from_dict(item if ref is None else {**item, "result": payloads.get(ref)}))
    return calls


def run_step(
    request: Mapping[str, Any], catalog: Catalog, payloads: PayloadStore, sandbox: CodeExecutor
) -> dict[str, Any]:
    """One durable replay step (the ``run_code_step`` activity): finished, pending calls with named arguments,
    or an error. Errors retrying cannot fix (violations, limits) come back as ``{"status": "error"}``; retryable
    ones (``SandboxBusy``, a failed zygote) raise :class:`RetryableActivityError` so Durable runs the step again:
    a replay step calls no tool itself, so repeating it repeats nothing."""
    tools: dict[str, str] = request["tools"]
    try:
        step = sandbox.step(
            request["code"], sorted(tools), _load_offloaded(request["recorded"], payloads),
            Limits.from_dict(request["limits"]), clock_iso=request["clock_iso"], seed=int(request["seed"]),
        )
    except WeftError as exc:
        if is_retryable(exc):
            raise RetryableActivityError(ErrorInfo.from_exception(exc)) from exc
        return {"status": "error", "error": ErrorInfo.from_exception(exc).model_dump(mode="json")}
    if step.done:
        return step.to_dict()
    calls = []
    for pending in step.calls:
        tool = tools[pending.tool]
        entry: dict[str, Any] = {"pending": pending.to_dict(), "tool": tool, "args": None, "error": None}
        try:
            entry["args"] = named_arguments(catalog.get(tool).spec, pending)
        except InvalidRequest as exc:
            entry["error"] = exc.message
        calls.append(entry)
    return {"status": "pending", "calls": calls}


async def run_inline(
    request: Mapping[str, Any],
    catalog: Catalog,
    executor: ToolExecutor,
    sandbox: CodeExecutor,
    payloads: PayloadStore,
    *,
    preview_bytes: int = 512,
    telemetry: Telemetry | None = None,
) -> dict[str, Any]:
    """The whole code run in one activity (``inline`` mode): tools are called through the executor as the code
    makes them. Returns the :class:`CodeResult` as JSON plus each call's :class:`StepRecord`.

    A result too large to travel inline was stored in ``payloads`` by the executor: the code gets the whole value
    back from there (the sandbox's own ``max_tool_result_bytes`` still applies) and the step records its reference
    and a ``preview_bytes`` preview, as plan mode does. Without a stored copy the call fails rather than hand the
    code a truncated value.

    With ``telemetry`` each call is a tool-call span (``execute_tool <tool>``, a child of the sandbox span) counted
    in ``weft.tool.calls``/``weft.tool.duration``, as ``call_tool`` activities are.

    Only ``SandboxBusy`` (no slot came free, so nothing ran) raises :class:`RetryableActivityError` for Durable to
    run the activity again; every other error comes back as ``{"status": "error"}``, because repeating a run that
    started would call its tools again."""
    tools: dict[str, str] = request["tools"]
    run_id = request["run_id"]
    records: list[dict[str, Any]] = []
    numbers = itertools.count(1)  # call ids in the order the code makes the calls, as in replay mode

    def make(py_name: str) -> Any:
        tool = tools[py_name]

        async def call(*args: Any, **kwargs: Any) -> Any:
            step_id = f"c{next(numbers)}"
            named = named_arguments(catalog.get(tool).spec, PendingCall(step_id, py_name, list(args), kwargs))
            result = await _execute(executor, ToolCall(run_id=run_id, step_id=step_id, tool=tool, args=named),
                                    telemetry)
            record = StepRecord(step_id=step_id, tool=tool, attempts=1, latency_ms=result.latency_ms,
                                args_hash=hash_args(named),
                                status=StepStatus.SUCCEEDED if result.ok else StepStatus.FAILED,
                                result=result.recorded_value(preview_bytes) if result.ok else None, error=result.error)
            value = result.value
            if result.ok and result.blob_ref:  # the code gets the whole value; the record keeps the reference
                value = await asyncio.to_thread(payloads.get, result.blob_ref)
            records.append(record.model_dump(mode="json"))
            if not result.ok:
                raise RuntimeError(result.error.message if result.error else "tool failed")
            return value

        return call

    try:
        outcome: CodeResult = await asyncio.to_thread(
            sandbox.run, request["code"], {name: make(name) for name in tools}, Limits.from_dict(request["limits"])
        )
    except SandboxBusy as exc:
        raise RetryableActivityError(ErrorInfo.from_exception(exc)) from exc
    except WeftError as exc:
        return {"status": "error", "error": ErrorInfo.from_exception(exc).model_dump(mode="json"), "steps": records}
    records.sort(key=lambda record: int(record["step_id"][1:]))
    return {"status": "finished", **outcome.to_dict(), "steps": records}


async def _execute(executor: ToolExecutor, call: ToolCall, telemetry: Telemetry | None) -> ToolResult:
    """One inline call through the executor, in a tool-call span when there is ``telemetry``. A result too large to
    travel inline that was not stored fails as ``result_too_large``."""
    if telemetry is None:
        return _inline_result(await executor.execute(call), call.tool)
    with telemetry.tool_call_span(call.tool, call.run_id, call.step_id) as span:
        span.record_arguments(call.args)
        result = _inline_result(await executor.execute(call), call.tool)
        span.set_outcome("ok" if result.ok or result.error is None else result.error.code)
        if result.ok:
            span.record_result(result.value)
    return result


def _inline_result(result: ToolResult, tool: str) -> ToolResult:
    if result.ok and result.truncated and not result.blob_ref:
        return result.model_copy(update={"ok": False, "value": None, "error": ErrorInfo(
            code="result_too_large", retryable=False,
            message=f"{tool} returned {result.size_bytes} bytes, more than can be passed inline, and the result "
                    "could not be stored; configure payload storage or ask the tool for less")})
    return result


class CodeRun:
    """Progress of a durable code run; pure, so it can live in the orchestrator."""

    def __init__(self, run_id: str, started: datetime) -> None:
        self.run_id = run_id
        self.started = started
        self.recorded: list[dict[str, Any]] = []
        self.records: list[StepRecord] = []
        self._pending: dict[str, PendingCall] = {}

    def prepare(self, step: Mapping[str, Any], specs: Mapping[str, ToolSpec], now: datetime) -> list[StepCall]:
        """Turn a pending replay step into ``call_tool`` calls; calls with unusable arguments fail at once."""
        calls = []
        for entry in step["calls"]:
            pending = PendingCall.from_dict(entry["pending"])
            record = StepRecord(step_id=pending.call_id, tool=entry["tool"], started_at=now)
            self.records.append(record)
            if entry["error"] is not None:
                record.status, record.finished_at = StepStatus.FAILED, now
                record.error = ErrorInfo(code="tool_arguments_invalid", message=entry["error"])
                self.recorded.append(RecordedCall.failed(pending, entry["error"]).to_dict())
                continue
            record.status = StepStatus.RUNNING
            record.args_hash = hash_args(entry["args"])
            self._pending[pending.call_id] = pending
            calls.append(StepCall(call=ToolCall(run_id=self.run_id, step_id=pending.call_id, tool=entry["tool"],
                                                args=entry["args"]), retry=specs[entry["tool"]].retry))
        return calls

    def record(self, outcomes: list[StepOutcome], now: datetime) -> None:
        by_id = {r.step_id: r for r in self.records}
        for outcome in outcomes:
            pending = self._pending.pop(outcome.step_id)
            record = by_id[outcome.step_id]
            result = outcome.result
            record.attempts, record.latency_ms, record.finished_at = outcome.attempts, result.latency_ms, now
            if result.ok:
                record.status = StepStatus.SUCCEEDED
                value = offloaded(result.blob_ref) if result.blob_ref else result.value
                record.result = result.recorded_value()
                self.recorded.append(RecordedCall.succeeded(pending, value).to_dict())
            else:
                record.status = StepStatus.FAILED
                record.error = result.error
                message = result.error.message if result.error else "tool failed"
                self.recorded.append(RecordedCall.failed(pending, message).to_dict())

    def result(self, step: Mapping[str, Any] | None, now: datetime, error: ErrorInfo | None = None) -> RunResult:
        """The :class:`RunResult`: the code's value and stdout as output, its tool calls as steps."""
        elapsed = round((now - self.started).total_seconds() * 1000.0, 3)
        errors = [error] if error else []
        output = None
        if step is not None:
            finished = ReplayStep.from_dict(step)
            output = {"result": finished.result, "stdout": finished.stdout}
            if finished.error is not None:
                errors.append(ErrorInfo(code="code_error", message=f"{finished.error.type}: {finished.error.message}"
                                        f"\n{finished.error.traceback}".strip(), field="code"))
        status = RunStatus.FAILED if errors else (
            RunStatus.COMPLETED_WITH_ERRORS if any(r.status == StepStatus.FAILED for r in self.records)
            else RunStatus.COMPLETED)
        return RunResult(run_id=self.run_id, mode="code", status=status, steps=self.records, output=output,
                         errors=errors, elapsed_ms=elapsed)
