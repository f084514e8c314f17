"""Code-mode activities: describe the code's tools, run one durable replay step, or run the code inline."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from activities.tracing import activity_span
from shared.runs.code_run import code_tools
from shared.runs.code_sandbox import run_inline, run_step
from shared.runs.contracts import CodeOutcome, CodeRunRequest, CodeStepRequest, PrepareCodeRequest, PreparedCode
from shared.runs.names import Activity
from shared.runtime import Runtime, get_runtime, get_runtime_async
from shared.telemetry import SandboxSpan

bp = df.Blueprint()


@bp.activity_trigger(input_name="request")
def prepare_code(request: dict[str, Any]) -> dict[str, Any]:
    """Tools the code may call (python name → tool name), their specs, the sandbox limits, fan-out width and the
    retry policy of the code activities."""
    runtime = get_runtime()
    asked = PrepareCodeRequest.model_validate(request)
    runtime.source_sync.ensure(asked.tools or ())
    tools = code_tools(runtime.catalog, asked.tools)
    specs = {name: runtime.catalog.get(name).spec for name in set(tools.values())}
    return PreparedCode(
        tools=tools, specs=specs, limits=runtime.settings.sandbox.to_dict(), max_fan_out=runtime.settings.max_fan_out,
        approval_timeout_s=runtime.settings.approval_timeout_s,
        sandbox_retry=runtime.settings.sandbox_capacity.retry_policy(),
    ).dump()


@bp.activity_trigger(input_name="request")
async def run_code_step(request: dict[str, Any], context: func.Context) -> dict[str, Any]:
    """One replay step of the code (:func:`shared.runs.code_sandbox.run_step`)."""
    runtime = await get_runtime_async()
    step_request = CodeStepRequest.model_validate(request)
    with activity_span(runtime.telemetry, context, Activity.RUN_CODE_STEP, step_request.run_id):
        await runtime.source_sync.ensure_async(step_request.tools.values())
        with _sandbox_span(runtime, "replay", step_request) as span:
            step = await asyncio.to_thread(run_step, step_request, runtime.catalog, runtime.payloads,
                                           runtime.code_executor)
            span.set_tool_calls(len(step.calls))
            _set_outcome(span, step)
    return step.dump()


@bp.activity_trigger(input_name="request")
async def run_code_inline(request: dict[str, Any], context: func.Context) -> dict[str, Any]:
    """The whole code run in this activity (:func:`shared.runs.code_sandbox.run_inline`)."""
    runtime = await get_runtime_async()
    run_request = CodeRunRequest.model_validate(request)
    with activity_span(runtime.telemetry, context, Activity.RUN_CODE_INLINE, run_request.run_id):
        await runtime.source_sync.ensure_async(run_request.tools.values())
        with _sandbox_span(runtime, "inline", run_request) as span:
            outcome = await run_inline(run_request, runtime.catalog, runtime.executor, runtime.code_executor,
                                       runtime.payloads, preview_bytes=runtime.settings.payloads.preview_bytes,
                                       telemetry=runtime.telemetry,
                                       on_side_effect=partial(runtime.trust.tool_executed, runtime.run_index))
            span.set_tool_calls(len(outcome.steps))
            _set_outcome(span, outcome)
    return outcome.dump()


def _set_outcome(span: SandboxSpan, outcome: CodeOutcome) -> None:
    span.set_outcome(outcome.failure.code if outcome.failure is not None else "ok")


@contextmanager
def _sandbox_span(runtime: Runtime, mode: str, request: CodeRunRequest) -> Iterator[SandboxSpan]:
    """The sandbox run's span, with the backend it runs on and the code (its SHA-256 unless content capture is on)."""
    backend = runtime.settings.sandbox_backend.kind
    with runtime.telemetry.sandbox_span(mode, backend=backend, run_id=request.run_id) as span:
        span.record_code(request.code)
        yield span
