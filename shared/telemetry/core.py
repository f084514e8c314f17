"""The :class:`Telemetry` object: Weft's spans and metrics behind a few typed helpers."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import SpanKind, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue
from prometheus_client import CollectorRegistry

from shared.telemetry import attributes as attr
from shared.telemetry.attributes import safe_attributes
from shared.telemetry.metrics import Metrics
from shared.telemetry.orchestration import OrchestrationContext, OrchestrationTelemetry
from shared.telemetry.settings import Exporter, TelemetrySettings
from shared.telemetry.spans import LlmCallSpan, SandboxSpan, SearchSpan, SpanHandle, ToolCallSpan, open_span

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = ["AZURE_OPENAI_PROVIDER", "TRACER_NAME", "Telemetry"]

TRACER_NAME = "weft"
AZURE_OPENAI_PROVIDER = "azure.ai.openai"
"""``gen_ai.provider.name`` of Azure OpenAI; ``openai`` for other OpenAI-compatible servers."""


class Telemetry:
    """Weft's tracer and :class:`Metrics`, with one helper per kind of operation (activity, tool call, LLM call,
    sandbox run, tool search); orchestrators emit through :meth:`orchestration`.

    Build it with :func:`~shared.telemetry.configure_telemetry` in the app (global providers, exporter chosen from
    the settings), or directly in tests with isolated providers::

        telemetry = Telemetry(settings, tracer_provider=provider, meter_provider=meter_provider)

    ``metrics`` shares an existing :class:`Metrics` (and its Prometheus registry) instead of building one from
    ``meter_provider``/``registry``. ``clock`` (seconds, monotonic) measures the durations recorded as attributes
    and metrics.
    """

    def __init__(
        self,
        settings: TelemetrySettings | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        registry: CollectorRegistry | None = None,
        metrics: Metrics | None = None,
        exporter: Exporter = Exporter.NONE,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.settings = settings or TelemetrySettings()
        """The settings this object was built from."""
        self.exporter = exporter
        """Who exports this process's telemetry to Azure Monitor (see :class:`Exporter`)."""
        self.tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        """The OpenTelemetry tracer for spans the helpers do not cover."""
        self.metrics = metrics if metrics is not None else Metrics(meter_provider, registry)
        """Every Weft metric (OpenTelemetry and Prometheus)."""
        self._clock = clock

    @property
    def capture_content(self) -> bool:
        """Whether prompts, arguments, results and code are recorded (``WEFT_TELEMETRY_CAPTURE_CONTENT``)."""
        return self.settings.capture_content

    def safe_attributes(self, attributes: Mapping[str, object]) -> dict[str, AttributeValue]:
        """:func:`~shared.telemetry.safe_attributes` with this process's content setting (for log ``extra`` too)."""
        return safe_attributes(attributes, capture_content=self.capture_content)

    # --------------------------------------------------------------------------------------------------- spans

    def _handle(self, span: trace.Span) -> SpanHandle:
        return SpanHandle(span, capture_content=self.capture_content)

    def activity_span(
        self, name: str, run_id: str | None, *, traceparent: str | None = None, tracestate: str | None = None
    ) -> AbstractContextManager[SpanHandle]:
        """The body of a Durable activity (span ``weft.activity <name>``, with ``weft.activity.name`` and
        ``weft.run.id``); the tool, LLM, sandbox and search spans of the activity are its children.

        Pass the invocation's ``context.trace_context.trace_parent`` / ``trace_state``: the span then joins the trace
        the host started for the invocation (its ``operation_Id``), whoever configured the exporter. Without them
        (or with a malformed one) the span continues the current context.
        """
        parent = None
        if traceparent:
            carrier = {"traceparent": traceparent, **({"tracestate": tracestate} if tracestate else {})}
            extracted = TraceContextTextMapPropagator().extract(carrier)
            if trace.get_current_span(extracted).get_span_context().is_valid:
                parent = extracted
        return open_span(
            self.tracer, f"weft.activity {name}", self._handle, clock=self._clock, context=parent,
            attributes={attr.ACTIVITY_NAME: name, attr.RUN_ID: run_id},
        )

    def tool_call_span(
        self, tool: str, run_id: str | None, step_id: str | None
    ) -> AbstractContextManager[ToolCallSpan]:
        """One tool call (span ``execute_tool <tool>``), counted in ``weft.tool.calls``/``weft.tool.duration``.

        Records ``weft.tool.name``, ``weft.run.id``, ``weft.step.id`` and, when the block ends,
        ``weft.tool.outcome`` and ``weft.tool.duration_ms``. Set the outcome from the result:
        ``span.set_outcome(result.error.code)``; record :meth:`ToolCallSpan.record_arguments` (their SHA-256 unless
        content capture is on) and :meth:`ToolCallSpan.record_result`. Retries are counted by the orchestrator
        (:meth:`OrchestrationTelemetry.tool_retried`): an activity does not know its Durable attempt.
        """

        def make(span: trace.Span) -> ToolCallSpan:
            return ToolCallSpan(span, capture_content=self.capture_content, metrics=self.metrics, tool=tool)

        return open_span(
            self.tracer, f"execute_tool {tool}", make, clock=self._clock,
            attributes={
                attr.TOOL_NAME: tool, attr.RUN_ID: run_id, attr.STEP_ID: step_id,
                attr.GEN_AI_OPERATION_NAME: "execute_tool", attr.GEN_AI_TOOL_NAME: tool,
            },
        )

    def llm_call_span(
        self,
        role: str,
        deployment: str,
        model: str | None = None,
        *,
        run_id: str | None = None,
        provider: str = AZURE_OPENAI_PROVIDER,
        server_address: str | None = None,
    ) -> AbstractContextManager[LlmCallSpan]:
        """One chat completion, per the GenAI semantic conventions (a CLIENT span ``chat <model>``).

        ``gen_ai.operation.name=chat``, ``gen_ai.provider.name`` and ``gen_ai.system`` = ``provider``,
        ``gen_ai.request.model`` = ``model`` or, when unknown, the deployment (Azure OpenAI takes the deployment
        name as the model), ``server.address`` (the endpoint's host), plus ``weft.llm.role``/``weft.llm.deployment``
        and ``weft.run.id``. Record usage with :meth:`LlmCallSpan.record_usage` and the reply with
        :meth:`LlmCallSpan.set_response`; prompts and completions only land with content capture on.
        """
        requested = model or deployment

        def make(span: trace.Span) -> LlmCallSpan:
            return LlmCallSpan(span, capture_content=self.capture_content, metrics=self.metrics, role=role,
                               deployment=deployment)

        return open_span(
            self.tracer, f"chat {requested}", make, clock=self._clock, kind=SpanKind.CLIENT,
            attributes={
                attr.GEN_AI_OPERATION_NAME: "chat", attr.GEN_AI_PROVIDER_NAME: provider, attr.GEN_AI_SYSTEM: provider,
                attr.GEN_AI_REQUEST_MODEL: requested, attr.SERVER_ADDRESS: server_address,
                attr.LLM_ROLE: role, attr.LLM_DEPLOYMENT: deployment, attr.RUN_ID: run_id,
            },
        )

    def sandbox_span(
        self, mode: str, *, backend: str | None = None, run_id: str | None = None
    ) -> AbstractContextManager[SandboxSpan]:
        """One sandbox run (span ``weft.sandbox <mode>``, ``mode`` = ``inline`` or ``replay``).

        Records ``weft.sandbox.mode``, ``weft.sandbox.backend`` (``local`` or ``dynamic_sessions``), ``weft.run.id``
        and, when the block ends, ``weft.sandbox.outcome`` and ``weft.sandbox.duration_ms``; counts
        ``weft.sandbox.runs``. Use :meth:`SandboxSpan.set_tool_calls` and :meth:`SandboxSpan.record_code`.
        """

        def make(span: trace.Span) -> SandboxSpan:
            return SandboxSpan(span, capture_content=self.capture_content, metrics=self.metrics, mode=mode)

        return open_span(
            self.tracer, f"weft.sandbox {mode}", make, clock=self._clock,
            attributes={attr.SANDBOX_MODE: mode, attr.SANDBOX_BACKEND: backend, attr.RUN_ID: run_id},
        )

    def search_span(
        self, k: int, catalog_size: int, *, run_id: str | None = None
    ) -> AbstractContextManager[SearchSpan]:
        """One tool search (span ``weft.search``) with ``weft.search.k``, ``weft.search.catalog_size`` and, for a
        run's search, ``weft.run.id``. Use :meth:`SearchSpan.set_results` and :meth:`SearchSpan.record_query`."""

        def make(span: trace.Span) -> SearchSpan:
            return SearchSpan(span, capture_content=self.capture_content)

        return open_span(
            self.tracer, "weft.search", make, clock=self._clock,
            attributes={attr.SEARCH_K: k, attr.SEARCH_CATALOG_SIZE: catalog_size, attr.RUN_ID: run_id},
        )

    # ------------------------------------------------------------------------------------------------ adapters

    def breaker_transition_hook(self, tool: str, old: str, new: str) -> None:
        """``CircuitBreaker(on_transition=telemetry.breaker_transition_hook)``: counts ``weft.breaker.transitions``.

        ``old``/``new`` are ``BreakerState`` values (a ``StrEnum``) or plain strings.
        """
        self.metrics.breaker_transition(tool, old, new)

    def orchestration(self, context: OrchestrationContext) -> OrchestrationTelemetry:
        """An :class:`OrchestrationTelemetry` for an orchestrator's ``context`` (emits nothing while replaying)."""
        return OrchestrationTelemetry(context, self)
