"""Code mode's activity core: one durable replay step (``run_code_step``) or a whole inline run (``run_code_inline``)
in the sandbox. I/O: the sandbox, the payload store and (inline) the tool executor; the orchestrator's side is
:mod:`shared.runs.code_run`.

Tools appear in the code as async functions named after them (dots and dashes become underscores). Calls may pass
arguments by position (in the order of the tool's parameters) or by name; they are turned into named arguments
before they become ``call_tool`` activities, so each one is validated, retried and recorded like a plan step.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from shared.catalog.catalog import Catalog
from shared.catalog.executor import ToolExecutor
from shared.errors import InvalidRequest, ResultTooLarge, SandboxBusy, WeftError, is_retryable
from shared.models import ErrorInfo, StepRecord, StepStatus, ToolCall, ToolResult, ToolSpec, hash_args
from shared.payloads import PayloadStore
from shared.runs.approval import approval_problem
from shared.runs.contracts import (
    CodeOutcome,
    CodeRunRequest,
    CodeStepRequest,
    PendingCallData,
    PendingEntry,
    RecordedCallData,
)
from shared.runs.step_calls import RetryableActivityError, offloaded, offloaded_ref
from shared.sandbox import CodeExecutor, CodeResult, Limits, PendingCall, RecordedCall
from shared.telemetry import Telemetry

__all__ = ["named_arguments", "run_inline", "run_step"]


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


def _load_offloaded(recorded: Sequence[RecordedCallData], payloads: PayloadStore) -> list[RecordedCall]:
    calls = []
    for item in recorded:
        data = item.model_dump(mode="json")
        ref = offloaded_ref(item.result)
        calls.append(RecordedCall.from_dict(data if ref is None else {**data, "result": payloads.get(ref)}))
    return calls


def run_step(request: CodeStepRequest, catalog: Catalog, payloads: PayloadStore, sandbox: CodeExecutor) -> CodeOutcome:
    """One durable replay step (the ``run_code_step`` activity): finished, pending calls with named arguments,
    or an error. Errors retrying cannot fix (violations, limits) come back as ``status="error"``; retryable
    ones (``SandboxBusy``, a failed zygote) raise :class:`RetryableActivityError` so Durable runs the step again:
    a replay step calls no tool itself, so repeating it repeats nothing."""
    tools = request.tools
    try:
        step = sandbox.step(
            request.code, sorted(tools), _load_offloaded(request.recorded, payloads),
            Limits.from_dict(request.limits), clock_iso=request.clock_iso, seed=request.seed,
        )
    except WeftError as exc:
        if is_retryable(exc):
            raise RetryableActivityError(ErrorInfo.from_exception(exc)) from exc
        return CodeOutcome(status="error", error=ErrorInfo.from_exception(exc))
    if step.done:
        return CodeOutcome.model_validate(step.to_dict())
    calls = []
    for pending in step.calls:
        tool = tools[pending.tool]
        entry = PendingEntry(pending=PendingCallData.model_validate(pending.to_dict()), tool=tool)
        try:
            entry.args = named_arguments(catalog.get(tool).spec, pending)
        except InvalidRequest as exc:
            entry.error = exc.message
        calls.append(entry)
    return CodeOutcome(status="pending", calls=calls)


async def run_inline(
    request: CodeRunRequest,
    catalog: Catalog,
    executor: ToolExecutor,
    sandbox: CodeExecutor,
    payloads: PayloadStore,
    *,
    preview_bytes: int = 512,
    telemetry: Telemetry | None = None,
    on_side_effect: Callable[[ToolCall, ToolResult | None], Awaitable[None]] | None = None,
) -> CodeOutcome:
    """The whole code run in one activity (``inline`` mode): tools are called through the executor as the code
    makes them. Returns the :class:`CodeResult` plus each call's :class:`StepRecord`.

    A result too large to travel inline was stored in ``payloads`` by the executor: the code gets the whole value
    back from there (the sandbox's own ``max_tool_result_bytes`` still applies) and the step records its reference
    and a ``preview_bytes`` preview, as plan mode does. Without a stored copy the call fails rather than hand the
    code a truncated value.

    With ``telemetry`` each call is a tool-call span (``execute_tool <tool>``, a child of the sandbox span) counted
    in ``weft.tool.calls``/``weft.tool.duration``, as ``call_tool`` activities are.

    Only ``SandboxBusy`` (no slot came free, so nothing ran) raises :class:`RetryableActivityError` for Durable to
    run the activity again; every other error comes back as ``status="error"``, because repeating a run that
    started would call its tools again. ``on_side_effect`` is awaited before (with None) and after (with the result)
    each execution of a side-effecting tool (the audit trail).

    A tool marked ``requires_approval`` never runs inline: the first such call stops the run there (that call and
    every later one are refused without running) and the outcome is ``approval_required`` with the calls that ran,
    from which the orchestrator goes on by replay, where the call can wait for its approval."""
    tools = request.tools
    run_id = request.run_id
    records: list[StepRecord] = []
    executed: list[RecordedCallData] = []
    halted: list[str] = []  # the first call that needs a human's approval: nothing runs after it
    numbers = itertools.count(1)  # call ids in the order the code makes the calls, as in replay mode

    def make(py_name: str) -> Any:
        tool = tools[py_name]

        async def call(*args: Any, **kwargs: Any) -> Any:
            step_id = f"c{next(numbers)}"
            if halted:
                raise RuntimeError("not run: the run is paused until a human approves an earlier call")
            spec = catalog.get(tool).spec
            pending = PendingCall(step_id, py_name, list(args), kwargs)
            named = named_arguments(spec, pending)
            tool_call = ToolCall(run_id=run_id, step_id=step_id, tool=tool, args=named)
            if approval_problem(tool_call, spec, None) is not None:
                halted.append(step_id)  # inline calls cannot wait for a human: the run goes on by replay
                raise RuntimeError(f"not run: {tool} needs a human's approval of this call")
            audit = on_side_effect if spec.side_effects else None
            if audit is not None:
                await audit(tool_call, None)
            result = await _execute(executor, tool_call, telemetry)
            if audit is not None:
                await audit(tool_call, result)
            records.append(StepRecord(
                step_id=step_id, tool=tool, attempts=1, latency_ms=result.latency_ms, args_hash=hash_args(named),
                status=StepStatus.SUCCEEDED if result.ok else StepStatus.FAILED,
                result=result.recorded_value(preview_bytes) if result.ok else None, error=result.error))
            data = PendingCallData.model_validate(pending.to_dict())
            value = result.value
            if result.ok:
                kept = offloaded(result.blob_ref) if result.blob_ref else result.value
                executed.append(RecordedCallData.succeeded(data, kept))
            else:
                executed.append(RecordedCallData.failed(data, result.error.message if result.error else "tool failed"))
            if result.ok and result.blob_ref:  # the code gets the whole value; the record keeps the reference
                value = await asyncio.to_thread(payloads.get, result.blob_ref)
            if not result.ok:
                raise RuntimeError(result.error.message if result.error else "tool failed")
            return value

        return call

    try:
        outcome: CodeResult = await asyncio.to_thread(
            sandbox.run, request.code, {name: make(name) for name in tools}, Limits.from_dict(request.limits)
        )
    except SandboxBusy as exc:
        raise RetryableActivityError(ErrorInfo.from_exception(exc)) from exc
    except WeftError as exc:
        if halted:
            return _paused(records, executed)
        return CodeOutcome(status="error", error=ErrorInfo.from_exception(exc), steps=records)
    if halted:
        return _paused(records, executed)
    records.sort(key=lambda record: int(record.step_id[1:]))
    return CodeOutcome.model_validate({"status": "finished", **outcome.to_dict(),
                                       "steps": [r.model_dump(mode="json") for r in records]})


def _paused(records: list[StepRecord], executed: list[RecordedCallData]) -> CodeOutcome:
    """An inline run stopped at a call that needs approval: the calls that ran, to go on from by replay."""
    records.sort(key=lambda record: int(record.step_id[1:]))
    executed.sort(key=lambda call: int(call.call_id[1:]))
    return CodeOutcome(status="approval_required", steps=records, tool_calls=executed)


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
        return result.model_copy(update={"ok": False, "value": None, "error": ErrorInfo.of(
            ResultTooLarge, f"{tool} returned {result.size_bytes} bytes, more than can be passed inline, and the "
                            "result could not be stored; configure payload storage or ask the tool for less")})
    return result
