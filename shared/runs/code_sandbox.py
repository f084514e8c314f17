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
from functools import partial
from typing import Any, TypeVar

from shared.catalog.catalog import Catalog
from shared.catalog.executor import ToolExecutor
from shared.errors import (
    ExecutionUncertain,
    InvalidRequest,
    JournalMismatch,
    ResultTooLarge,
    RunCanceled,
    SandboxBusy,
    ToolFailed,
    UpstreamUnavailable,
    WeftError,
    is_retryable,
)
from shared.models import ErrorInfo, StepRecord, StepStatus, ToolCall, ToolResult, ToolSpec, hash_args
from shared.payloads import PayloadStore, ref_of_run
from shared.runs.approval import approval_problem
from shared.runs.call_journal import JournalEntry, journal_for
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

_T = TypeVar("_T")


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


def _load_offloaded(recorded: Sequence[RecordedCallData], payloads: PayloadStore, run_id: str
                    ) -> list[RecordedCall]:
    """The recorded calls with stored results read back: only this run's own references are followed (a tool whose
    result looks like a reference gets it back as it is)."""
    calls = []
    for item in recorded:
        data = item.model_dump(mode="json")
        ref = offloaded_ref(item.result)
        if ref is not None and ref_of_run(ref, run_id):
            data = {**data, "result": payloads.get(ref)}
        calls.append(RecordedCall.from_dict(data))
    return calls


def run_step(request: CodeStepRequest, catalog: Catalog, payloads: PayloadStore, sandbox: CodeExecutor) -> CodeOutcome:
    """One durable replay step (the ``run_code_step`` activity): finished, pending calls with named arguments,
    or an error. Errors retrying cannot fix (violations, limits) come back as ``status="error"``; retryable
    ones (``SandboxBusy``, a failed zygote) raise :class:`RetryableActivityError` so Durable runs the step again:
    a replay step calls no tool itself, so repeating it repeats nothing."""
    tools = request.tools
    try:
        step = sandbox.step(
            request.code, sorted(tools), _load_offloaded(request.recorded, payloads, request.run_id),
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

    Each completed call is journalled in payload storage (:mod:`shared.runs.call_journal`, by run and call
    sequence) before the code gets its outcome. A delivery of this activity after a crash runs the code again from
    the start and hands it the journalled outcomes instead of calling those tools again (the call at each sequence
    must still be the same tool with the same arguments' hash, else the run ends ``journal_mismatch`` without
    running anything more); a side-effecting call that had begun and never completed is run again only if its tool is
    idempotent (its record then says ``redelivered``), else it fails ``execution_uncertain`` without running.

    Only ``SandboxBusy`` (no slot came free, so nothing ran) raises :class:`RetryableActivityError` for Durable to
    run the activity again; every other error comes back as ``status="error"``, because repeating a run that
    started would call its tools again. ``on_side_effect`` is awaited before (with None) and after (with the result)
    each execution of a side-effecting tool (the audit trail).

    A tool marked ``requires_approval`` never runs inline: the first such call stops the run there (that call and
    every later one are refused without running) and the outcome is ``approval_required`` with the calls that ran,
    from which the orchestrator goes on by replay, where the call can wait for its approval."""
    tools = request.tools
    run_id = request.run_id
    journal = journal_for(payloads)
    records: list[StepRecord] = []
    executed: list[RecordedCallData] = []
    halted: list[str] = []  # the first call that needs a human's approval: nothing runs after it
    stopped: list[ErrorInfo] = []  # why the run must end now (journal mismatch, storage down): nothing runs after it
    numbers = itertools.count(1)  # call ids in the order the code makes the calls, as in replay mode
    try:
        journalled = await asyncio.to_thread(journal.completed, run_id)  # calls an earlier delivery completed
    except Exception as exc:  # nothing ran yet
        return CodeOutcome(status="error", error=_storage_down(exc))

    async def journalled_io(function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        try:
            return await asyncio.to_thread(function, *args, **kwargs)
        except Exception as exc:
            stopped.append(_storage_down(exc))
            raise RuntimeError(f"not run: {stopped[0].message}") from None

    async def execute(tool_call: ToolCall, spec: ToolSpec, seq: int, args_hash: str) -> JournalEntry:
        """Run the call (unless a crash may already have run it) and journal it before the code sees it."""
        redelivered = False
        if spec.side_effects:  # an execution marker: a restarted run learns that this call began
            redelivered = await journalled_io(journal.begin, run_id, f"inline:{tool_call.step_id}:{args_hash}")
        if redelivered and not spec.idempotent:
            result = ToolResult(ok=False, redelivered=True, error=ErrorInfo.of(ExecutionUncertain, (
                f"{tool_call.tool} (call {tool_call.step_id}) may already have executed: the run was restarted after "
                "a crash while this call was running, and the tool is not idempotent, so it was not run again; "
                "check its effect, or mark the tool idempotent: true if repeating a call is harmless")))
        else:
            audit = on_side_effect if spec.side_effects else None
            if audit is not None:
                await audit(tool_call, None)
            gate = partial(journal.refuse_if_canceled, run_id,  # a canceled run
                           timeout_s=executor.settings.cancel_check_timeout_s) if spec.side_effects else None
            result = await _execute(executor, tool_call, telemetry, gate)
            if result.error is not None and result.error.code == RunCanceled.code:
                stopped.append(result.error)  # the run was canceled: nothing runs after this call
            if audit is not None:
                await audit(tool_call, result)
        record = StepRecord(
            step_id=tool_call.step_id, tool=tool_call.tool, attempts=1, latency_ms=result.latency_ms,
            args_hash=args_hash, status=StepStatus.SUCCEEDED if result.ok else StepStatus.FAILED,
            result=result.recorded_value(preview_bytes) if result.ok else None, error=result.error,
            redelivered=redelivered)
        if not result.ok:
            message = result.error.message if result.error else "tool failed"
            return await journalled_io(journal.record, run_id, seq, tool_call.tool, args_hash, error=message,
                                       record=record.model_dump(mode="json"))
        kept = offloaded(result.blob_ref) if result.blob_ref else result.value
        return await journalled_io(journal.record, run_id, seq, tool_call.tool, args_hash, kept,
                                   record=record.model_dump(mode="json"))

    async def deliver(entry: JournalEntry, data: PendingCallData, args_hash: str) -> Any:
        """Hand the code a journalled call's outcome (whole: a stored result is read back) and record it."""
        records.append(StepRecord.model_validate(entry.record) if entry.record is not None else StepRecord(
            step_id=data.call_id, tool=entry.tool, attempts=1, args_hash=args_hash, result=entry.result,
            status=StepStatus.SUCCEEDED if entry.ok else StepStatus.FAILED,
            error=None if entry.ok else ErrorInfo.of(ToolFailed, entry.error or "tool failed")))
        if not entry.ok:
            executed.append(RecordedCallData.failed(data, entry.error or "tool failed"))
            raise RuntimeError(entry.error or "tool failed")
        executed.append(RecordedCallData.succeeded(data, entry.result))
        ref = offloaded_ref(entry.result)  # the code gets the whole value; the record keeps the reference
        return entry.result if ref is None else await asyncio.to_thread(payloads.get, ref)

    def make(py_name: str) -> Any:
        tool = tools[py_name]

        async def call(*args: Any, **kwargs: Any) -> Any:
            step_id = f"c{next(numbers)}"
            if stopped:
                raise RuntimeError(f"not run: {stopped[0].message}")
            if halted:
                raise RuntimeError("not run: the run is paused until a human approves an earlier call")
            spec = catalog.get(tool).spec
            pending = PendingCall(step_id, py_name, list(args), kwargs)
            named = named_arguments(spec, pending)
            args_hash = hash_args(named)
            data = PendingCallData.model_validate(pending.to_dict())
            entry = journalled.get(int(step_id[1:]))
            if entry is not None and not entry.matches(tool, args_hash):
                stopped.append(ErrorInfo.of(JournalMismatch, (
                    f"the run was restarted after a crash and its call {step_id} is now {tool} with arguments of "
                    f"sha256 {args_hash[:12]}…, where the run's journal recorded {entry.tool} with "
                    f"{entry.args_sha256[:12]}…: the code is not deterministic (it depends on time, randomness or "
                    "outside state), so its completed calls cannot be replayed; nothing was executed again"),
                    field="code"))
                raise RuntimeError(f"not run: {stopped[0].message}")
            if entry is None:
                tool_call = ToolCall(run_id=run_id, step_id=step_id, tool=tool, args=named)
                if approval_problem(tool_call, spec, None) is not None:
                    halted.append(step_id)  # inline calls cannot wait for a human: the run goes on by replay
                    raise RuntimeError(f"not run: {tool} needs a human's approval of this call")
                entry = await execute(tool_call, spec, int(step_id[1:]), args_hash)
            return await deliver(entry, data, args_hash)

        return call

    try:
        outcome: CodeResult = await asyncio.to_thread(
            sandbox.run, request.code, {name: make(name) for name in tools}, Limits.from_dict(request.limits)
        )
    except SandboxBusy as exc:
        raise RetryableActivityError(ErrorInfo.from_exception(exc)) from exc
    except WeftError as exc:
        if stopped:
            return CodeOutcome(status="error", error=stopped[0], steps=_in_order(records))
        if halted:
            return _paused(records, executed)
        return CodeOutcome(status="error", error=ErrorInfo.from_exception(exc), steps=_in_order(records))
    if stopped:
        return CodeOutcome(status="error", error=stopped[0], steps=_in_order(records))
    if halted:
        return _paused(records, executed)
    return CodeOutcome.model_validate({"status": "finished", **outcome.to_dict(),
                                       "steps": [r.model_dump(mode="json") for r in _in_order(records)]})


def _in_order(records: list[StepRecord]) -> list[StepRecord]:
    return sorted(records, key=lambda record: int(record.step_id[1:]))


def _storage_down(exc: Exception) -> ErrorInfo:
    return ErrorInfo.of(UpstreamUnavailable, f"the run's call journal in payload storage could not be used "
                        f"({type(exc).__name__}), so no further tool call runs; the calls journalled so far are kept")


def _paused(records: list[StepRecord], executed: list[RecordedCallData]) -> CodeOutcome:
    """An inline run stopped at a call that needs approval: the calls that ran, to go on from by replay."""
    executed.sort(key=lambda call: int(call.call_id[1:]))
    return CodeOutcome(status="approval_required", steps=_in_order(records), tool_calls=executed)


async def _execute(executor: ToolExecutor, call: ToolCall, telemetry: Telemetry | None,
                   gate: Callable[[], None] | None = None) -> ToolResult:
    """One inline call through the executor, in a tool-call span when there is ``telemetry``. A result too large to
    travel inline that was not stored fails as ``result_too_large``. ``gate``: see :meth:`ToolExecutor.execute`."""
    if telemetry is None:
        return _inline_result(await executor.execute(call, gate=gate), call.tool)
    with telemetry.tool_call_span(call.tool, call.run_id, call.step_id) as span:
        span.record_arguments(call.args)
        result = _inline_result(await executor.execute(call, gate=gate), call.tool)
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
