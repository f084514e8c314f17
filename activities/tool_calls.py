"""Tool activities: describe the tools a plan uses, and call one tool."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from activities.tracing import activity_span
from shared.errors import CircuitOpen, ExecutionUncertain, RunCanceled, ToolArgumentsInvalid
from shared.models import ErrorInfo, Plan, ToolResult, ToolSpec, hash_args
from shared.payloads import ref_of_run
from shared.runs.admission import prepared_plan
from shared.runs.approval import approval_problem
from shared.runs.call_journal import journal_for
from shared.runs.contracts import (
    ArchivedStepRecords,
    FinishedRun,
    PlanAdvance,
    PlanFinish,
    PlanProgressRefs,
    StepRecordsArchive,
)
from shared.runs.names import Activity
from shared.runs.plan import resolve_refs
from shared.runs.plan_window import advance, finish, load_progress
from shared.runs.record_archive import archive_records, load_records
from shared.runs.step_calls import CircuitWait, RetryableToolError, StepCall
from shared.runtime import Runtime, get_runtime, get_runtime_async

bp = df.Blueprint()


@bp.activity_trigger(input_name="plan")
def prepare_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """The specs of the tools the plan names (unknown names are left out) and the fan-out width."""
    return prepared_plan(Plan.model_validate(plan), get_runtime()).dump()


@bp.activity_trigger(input_name="archive")
def archive_step_records(archive: dict[str, Any]) -> str:
    """Store the step records a plan generation finished before it continues as new; their payload reference."""
    return archive_records(get_runtime().payloads, StepRecordsArchive.model_validate(archive))


@bp.activity_trigger(input_name="archived")
def load_step_records(archived: dict[str, Any]) -> dict[str, Any]:
    """Every step record a run's earlier generations archived, by step id (read once, for the final result)."""
    return load_records(get_runtime().payloads, ArchivedStepRecords.model_validate(archived))


@bp.activity_trigger(input_name="generation")
def advance_plan(generation: dict[str, Any]) -> dict[str, Any]:
    """A long plan's generation is over: store its progress and records; the next window (a :class:`PlanWindow`)."""
    return advance(get_runtime().payloads, PlanAdvance.model_validate(generation)).dump()


@bp.activity_trigger(input_name="last")
def finish_plan(last: dict[str, Any]) -> dict[str, Any]:
    """A long plan's last generation is over: the run's :class:`FinishedRun`, every step's record included."""
    return FinishedRun.of(finish(get_runtime().payloads, PlanFinish.model_validate(last))).dump()


@bp.activity_trigger(input_name="stored")
def load_plan_progress(stored: dict[str, Any]) -> dict[str, Any]:
    """A long plan and its run's progress, read back once at the end of a run prepared before ``finish_plan``
    existed (:class:`PlanProgress`)."""
    return load_progress(get_runtime().payloads, PlanProgressRefs.model_validate(stored)).dump()


@bp.activity_trigger(input_name="request")
async def call_tool(request: dict[str, Any], context: func.Context) -> dict[str, Any]:
    """Run one tool call; raise only for retryable failures so Durable retries them. A call rejected by the tool's
    open circuit returns a :class:`CircuitWait`: the orchestrator waits out the cool-down, not Durable's interval.

    A side-effecting tool's call is journalled (:mod:`shared.runs.call_journal`): an execution marker per attempt
    before it runs and its outcome before it reports. A delivery of an attempt that began and never reported (the
    host crashed) does not run a non-idempotent tool again: the step fails ``execution_uncertain``; an idempotent one
    runs again, flagged ``redelivered``. An outcome settled but never reported is reported, not recomputed. A call of
    a canceled run (:meth:`CallJournal.cancel <shared.runs.call_journal.CallJournal.cancel>`) does not run: it fails
    ``canceled``, final, whichever orchestration (a sub-orchestration terminate did not reach) still asked for it."""
    runtime = await get_runtime_async()
    step = StepCall.model_validate(request)
    with activity_span(runtime.telemetry, context, Activity.CALL_TOOL, step.call.run_id):
        return await _call_tool(runtime, step)


async def _call_tool(runtime: Runtime, step: StepCall) -> dict[str, Any]:
    call = step.call
    await runtime.source_sync.ensure_async([call.tool])
    spec = runtime.catalog.get(call.tool).spec if call.tool in runtime.catalog else None
    if spec is None or not spec.side_effects:  # nothing outside Weft changes: running it again is harmless
        return await _run_tool(runtime, step, spec)
    # A side-effecting call: find out from the journal whether this delivery repeats one that never reported
    journal = journal_for(runtime.payloads)
    key = f"call:{call.step_id}:{hash_args(call.args)}"
    dispatch = await asyncio.to_thread(journal.dispatch, call.run_id, key)
    if dispatch.settled is not None:  # an earlier delivery finished the call and could not report: its outcome
        return dispatch.settled
    if dispatch.redelivered and not spec.idempotent:
        result = ToolResult(ok=False, redelivered=True, error=ErrorInfo.of(ExecutionUncertain, (
            f"{call.tool} (step {call.step_id}) may already have executed: an earlier delivery of this call began "
            "and never reported back (the host crashed or was stopped), and the tool is not idempotent, so it was "
            "not run again; check its effect, or mark the tool idempotent: true if repeating a call is harmless")))
        output = result.model_dump(mode="json")
        await asyncio.to_thread(journal.settle, call.run_id, key, dispatch.attempt, output, final=True)
        return output
    if dispatch.canceled:  # Durable's terminate reaches neither sub-orchestrations nor queued activities: stop here
        result = ToolResult(ok=False, error=ErrorInfo.of(RunCanceled, (
            f"{call.tool} (step {call.step_id}) was not run: the run was canceled")))
        await runtime.trust.tool_executed(runtime.run_index, call, result)
        output = result.model_dump(mode="json")
        await asyncio.to_thread(journal.settle, call.run_id, key, dispatch.attempt, output, final=True)
        return output
    try:
        output = await _run_tool(runtime, step, spec, redelivered=dispatch.redelivered)
    except RetryableToolError as exc:  # a reported failure: Durable's retry is a new attempt
        await asyncio.to_thread(journal.settle, call.run_id, key, dispatch.attempt,
                                exc.error.model_dump(mode="json"), final=False)
        raise
    final = CircuitWait.from_output(output) is None  # a circuit wait ran nothing and is tried again
    await asyncio.to_thread(journal.settle, call.run_id, key, dispatch.attempt, output, final=final)
    return output


async def _run_tool(runtime: Runtime, step: StepCall, spec: ToolSpec | None, *,
                    redelivered: bool = False) -> dict[str, Any]:
    call = step.call
    approved = spec is not None and approval_problem(call, spec, step.approval) is None
    foreign = [ref for ref in step.offloaded.values() if not ref_of_run(ref, call.run_id)]
    if foreign:  # a reference only ever names this run's own stored results, whatever a tool's output looked like
        error = ErrorInfo.of(ToolArgumentsInvalid, "an argument refers to a stored result that is not this run's")
        return ToolResult(ok=False, error=error).model_dump(mode="json")
    if step.offloaded:
        loaded = await asyncio.gather(
            *(asyncio.to_thread(runtime.payloads.get, ref) for ref in step.offloaded.values())
        )
        call = call.model_copy(update={"args": resolve_refs(call.args, dict(zip(step.offloaded, loaded, strict=True)))})
    with runtime.telemetry.tool_call_span(call.tool, call.run_id, call.step_id) as span:
        span.record_arguments(step.call.args)  # as hashed in StepRecord.args_hash (offloaded values by reference)
        audited = spec is not None and spec.side_effects
        if audited:
            await runtime.trust.tool_executed(runtime.run_index, step.call, None)
        gate = partial(journal_for(runtime.payloads).refuse_if_canceled, call.run_id,
                       timeout_s=runtime.executor.settings.cancel_check_timeout_s) if audited else None
        result = await runtime.executor.execute(call, approved=approved, gate=gate)
        span.set_outcome("ok" if result.ok or result.error is None else result.error.code)
        if result.ok:
            span.record_result(result.value)
    if audited:
        await runtime.trust.tool_executed(runtime.run_index, step.call, result)
    result.redelivered = redelivered
    if not result.ok and result.error is not None and result.error.retryable:
        if result.error.code == CircuitOpen.code:
            wait = await asyncio.to_thread(runtime.executor.retry_after, call.tool)
            return CircuitWait(circuit_open=result.error, retry_after_s=wait).model_dump(mode="json")
        raise RetryableToolError(result.error)
    if result.blob_ref and isinstance(result.value, str):
        result.value = result.value[: runtime.settings.payloads.preview_bytes]
    return result.model_dump(mode="json")
