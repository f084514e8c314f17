"""Code-mode activities: describe the code's tools, run one durable replay step, or run the code inline."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from activities.tracing import activity_span
from shared.runs.code_run import code_tools, run_inline, run_step, tools_needing_approval
from shared.runtime import Runtime, get_runtime, get_runtime_async
from shared.telemetry import SandboxSpan

bp = df.Blueprint()


@bp.activity_trigger(input_name="request")
def prepare_code(request: dict[str, Any]) -> dict[str, Any]:
    """Tools the code may call (python name → tool name), their specs, the sandbox limits, fan-out width and the
    retry policy of the code activities."""
    runtime = get_runtime()
    runtime.source_sync.ensure(request.get("tools") or ())
    tools = code_tools(runtime.catalog, request.get("tools"))
    specs = {name: runtime.catalog.get(name).spec.model_dump(mode="json") for name in set(tools.values())}
    return {"tools": tools, "specs": specs, "limits": runtime.settings.sandbox.to_dict(),
            "max_fan_out": runtime.settings.max_fan_out, "approval_timeout_s": runtime.settings.approval_timeout_s,
            "sandbox_retry": runtime.settings.sandbox_capacity.retry_policy(),
            "approval_tools": tools_needing_approval(request.get("code") or "", tools, runtime.catalog)}


@bp.activity_trigger(input_name="request")
async def run_code_step(request: dict[str, Any], context: func.Context) -> dict[str, Any]:
    runtime = await get_runtime_async()
    with activity_span(runtime.telemetry, context, "run_code_step", request["run_id"]):
        await runtime.source_sync.ensure_async(request["tools"].values())
        with _sandbox_span(runtime, "replay", request) as span:
            step = await asyncio.to_thread(run_step, request, runtime.catalog, runtime.payloads, runtime.code_executor)
            span.set_tool_calls(len(step.get("calls") or []))
            span.set_outcome(step["error"]["code"] if step["status"] == "error" else "ok")
    return step


@bp.activity_trigger(input_name="request")
async def run_code_inline(request: dict[str, Any], context: func.Context) -> dict[str, Any]:
    runtime = await get_runtime_async()
    with activity_span(runtime.telemetry, context, "run_code_inline", request["run_id"]):
        await runtime.source_sync.ensure_async(request["tools"].values())
        with _sandbox_span(runtime, "inline", request) as span:
            outcome = await run_inline(request, runtime.catalog, runtime.executor, runtime.code_executor,
                                       runtime.payloads, preview_bytes=runtime.settings.payloads.preview_bytes,
                                       telemetry=runtime.telemetry)
            span.set_tool_calls(len(outcome.get("steps") or []))
            span.set_outcome(outcome["error"]["code"] if outcome["status"] == "error" else "ok")
    return outcome


@contextmanager
def _sandbox_span(runtime: Runtime, mode: str, request: dict[str, Any]) -> Iterator[SandboxSpan]:
    """The sandbox run's span, with the backend it runs on and the code (its SHA-256 unless content capture is on)."""
    backend = runtime.settings.sandbox_backend.kind
    with runtime.telemetry.sandbox_span(mode, backend=backend, run_id=request["run_id"]) as span:
        span.record_code(request["code"])
        yield span
