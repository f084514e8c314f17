"""Activity spans on the invocation's trace context.

An activity that declares ``context: func.Context`` gets the host's trace context for its invocation
(``context.trace_context.trace_parent``, a W3C ``traceparent``). Opening the activity's span under it puts Weft's
tool, LLM, sandbox and search spans in the trace the host started for that invocation: they share its
``operation_Id`` in Application Insights, whoever configured the exporter.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import azure.functions as func

from shared.telemetry import SpanHandle, Telemetry


def activity_span(
    telemetry: Telemetry, context: func.Context | None, name: str, run_id: str | None
) -> AbstractContextManager[SpanHandle]:
    """``telemetry.activity_span(name, run_id)`` parented on ``context``'s trace context (if it has one)."""
    trace_context = getattr(context, "trace_context", None)
    traceparent = getattr(trace_context, "trace_parent", None) or getattr(trace_context, "Traceparent", None)
    tracestate = getattr(trace_context, "trace_state", None) or getattr(trace_context, "Tracestate", None)
    return telemetry.activity_span(name, run_id, traceparent=traceparent or None, tracestate=tracestate or None)
