"""Weft's telemetry: OpenTelemetry spans and metrics for Application Insights, the same metrics for Prometheus.

What callers see::

    telemetry = configure_telemetry(TelemetrySettings.from_env(os.environ))   # once per process; idempotent
    with telemetry.activity_span("call_tool", run_id, traceparent=context.trace_context.trace_parent):
        with telemetry.tool_call_span(call.tool, call.run_id, call.step_id) as span:
            span.record_arguments(call.args)                                 # SHA-256 only unless capture is on
            result = await executor.execute(call)
            span.set_outcome("ok" if result.ok else result.error.code)
    with telemetry.llm_call_span("planner", deployment, run_id=run_id, server_address=host) as span:
        reply = model.complete(...)
        span.set_response(model=reply.model, response_id=reply.response_id, finish_reasons=[reply.finish_reason])
        span.record_usage(reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.cached_tokens)
    breaker = CircuitBreaker(store, on_transition=telemetry.breaker_transition_hook)
    body, content_type = telemetry.metrics.prometheus_text()                 # GET /api/metrics
    telemetry_from_env().orchestration(context).run_finished(...)          # orchestrators: skipped on replay

Modules:

- :mod:`~shared.telemetry.settings` — :class:`TelemetrySettings` and the :class:`Exporter` choice.
- :mod:`~shared.telemetry.azure_monitor` — :func:`configure_telemetry` (``configure_azure_monitor`` only when a
  connection string is set and the platform switch is off), :func:`telemetry_from_env` (the same, for orchestrators),
  :func:`get_telemetry`.
- :mod:`~shared.telemetry.core` — :class:`Telemetry`: the tracer, :class:`Metrics` and one span helper per kind of
  operation (activity, tool call, LLM call, sandbox run, tool search).
- :mod:`~shared.telemetry.spans` — the handles those helpers yield (outcome, duration and metrics on exit).
- :mod:`~shared.telemetry.metrics` — :class:`Metrics`: each figure into an OpenTelemetry instrument and a
  ``prometheus_client`` registry (the table of names is there).
- :mod:`~shared.telemetry.attributes` — attribute names and :func:`safe_attributes` (the content policy).
- :mod:`~shared.telemetry.orchestration` — :class:`OrchestrationTelemetry` (run and stage spans, tool retries),
  :func:`emit_if_not_replaying`.

Span attributes are the contract with ``docs/operations.md``'s KQL: ``weft.run.id`` (every Weft span: the
orchestration instance id, ``<run id>:<suffix>`` for a task's sub-runs), ``weft.run.status`` (run spans),
``weft.tool.name``/``weft.tool.duration_ms`` (tool-call spans), ``gen_ai.usage.input_tokens``/``output_tokens``,
``gen_ai.request.model`` and ``gen_ai.response.model`` (LLM spans). Prompts, completions, arguments, results, code
and search queries are kept out unless ``WEFT_TELEMETRY_CAPTURE_CONTENT=true``. Nothing is built at import time.
"""

from shared.telemetry.attributes import CONTENT_ATTRIBUTES, content_digest, safe_attributes
from shared.telemetry.azure_monitor import (
    configure_telemetry,
    exporter_credential,
    get_telemetry,
    telemetry_from_env,
)
from shared.telemetry.core import AZURE_OPENAI_PROVIDER, Telemetry
from shared.telemetry.metrics import Metrics
from shared.telemetry.orchestration import OrchestrationContext, OrchestrationTelemetry, emit_if_not_replaying
from shared.telemetry.settings import Exporter, TelemetrySettings
from shared.telemetry.spans import LlmCallSpan, SandboxSpan, SearchSpan, SpanHandle, ToolCallSpan

__all__ = [
    "AZURE_OPENAI_PROVIDER",
    "CONTENT_ATTRIBUTES",
    "Exporter",
    "LlmCallSpan",
    "Metrics",
    "OrchestrationContext",
    "OrchestrationTelemetry",
    "SandboxSpan",
    "SearchSpan",
    "SpanHandle",
    "Telemetry",
    "TelemetrySettings",
    "ToolCallSpan",
    "configure_telemetry",
    "content_digest",
    "emit_if_not_replaying",
    "exporter_credential",
    "get_telemetry",
    "safe_attributes",
    "telemetry_from_env",
]
