"""Weft's metrics, recorded once and delivered twice: to OpenTelemetry (Azure Monitor) and to a Prometheus registry.

Why a facade and not OpenTelemetry's ``PrometheusMetricReader``: that reader lives in
``opentelemetry-exporter-prometheus``, a pre-release (``0.x b``) package released in lock-step with the SDK, which is
not a dependency here; it also registers itself in ``prometheus_client``'s *global* registry and rewrites names.
Each :class:`Metrics` method below therefore updates one OpenTelemetry instrument and one ``prometheus_client``
metric in the facade's own :class:`~prometheus_client.CollectorRegistry`, with the same values and buckets, so
``GET /api/metrics`` shows the figures Azure Monitor receives. Both sides are per process: Azure Monitor aggregates
across instances, while ``/api/metrics`` shows the instance (and worker process) that answered.

=============================  ==========================================  =======================================
OpenTelemetry instrument        attributes                                  Prometheus series (labels)
=============================  ==========================================  =======================================
``weft.tool.calls``             weft.tool.name, weft.tool.outcome           ``weft_tool_calls_total`` (tool, outcome)
``weft.tool.duration`` (ms)     weft.tool.name, weft.tool.outcome           ``weft_tool_duration_milliseconds``
``weft.tool.retries``           weft.tool.name                              ``weft_tool_retries_total`` (tool)
``weft.runs``                   weft.run.mode, weft.run.status              ``weft_runs_total`` (mode, status)
``weft.run.duration`` (ms)      weft.run.mode, weft.run.status              ``weft_run_duration_milliseconds``
``weft.llm.tokens``             weft.llm.role, weft.llm.deployment,         ``weft_llm_tokens_total``
                                weft.llm.token_kind (input|output|cached)   (role, deployment, kind)
``weft.llm.duration`` (ms)      weft.llm.role, weft.llm.deployment,         ``weft_llm_duration_milliseconds``
                                weft.llm.outcome                            (role, deployment, outcome)
``weft.breaker.transitions``    weft.tool.name, weft.breaker.from, .to      ``weft_breaker_transitions_total``
                                                                            (tool, from, to)
``weft.sandbox.runs``           weft.sandbox.mode, weft.sandbox.outcome     ``weft_sandbox_runs_total`` (mode, outcome)
``weft.sandbox.duration`` (ms)  weft.sandbox.mode, weft.sandbox.outcome     ``weft_sandbox_duration_milliseconds``
=============================  ==========================================  =======================================

``weft.tool.retries`` is counted by the orchestrator when a call settles after more than one attempt (an activity
does not know which attempt it is); ``weft.runs`` too comes from the orchestrator, the others from activities.
``cached`` tokens are the part of the input tokens served from the prompt cache (they are counted in ``input`` too).
Label values are bounded: tool names come from the catalog, outcomes are ``ok`` or an ``ErrorInfo.code``.
"""

from __future__ import annotations

from typing import Final

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import MeterProvider
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from shared.telemetry import attributes as attr

__all__ = ["DURATION_BUCKETS_MS", "LLM_DURATION_BUCKETS_MS", "RUN_DURATION_BUCKETS_MS", "Metrics"]

METER_NAME: Final = "weft"

DURATION_BUCKETS_MS: Final = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0,
                              30_000.0, 60_000.0, 120_000.0)
"""Histogram buckets of tool calls and sandbox runs (ms)."""
LLM_DURATION_BUCKETS_MS: Final = (100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 20_000.0, 40_000.0,
                                  80_000.0, 120_000.0, 300_000.0)
"""Histogram buckets of LLM calls (ms)."""
RUN_DURATION_BUCKETS_MS: Final = (100.0, 500.0, 1_000.0, 5_000.0, 10_000.0, 30_000.0, 60_000.0, 300_000.0,
                                  900_000.0, 3_600_000.0, 14_400_000.0, 86_400_000.0)
"""Histogram buckets of whole runs (ms): seconds to a day, since runs may wait for approval."""

TOKEN_KINDS: Final = ("input", "output", "cached")


class Metrics:
    """Every Weft metric, recorded into OpenTelemetry instruments and a Prometheus registry at once.

    ``meter_provider`` defaults to the global one (set by ``configure_azure_monitor`` or the Functions worker, or a
    no-op); ``registry`` defaults to a new registry owned by this object (never ``prometheus_client.REGISTRY``).
    Thread-safe. Instruments are created here, not at import time.
    """

    def __init__(
        self, meter_provider: MeterProvider | None = None, registry: CollectorRegistry | None = None
    ) -> None:
        meter = (meter_provider or otel_metrics.get_meter_provider()).get_meter(METER_NAME)
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        """The Prometheus registry ``GET /api/metrics`` serves (see :meth:`prometheus_text`)."""
        reg = self.registry

        self._tool_calls = meter.create_counter("weft.tool.calls", unit="{call}", description="Tool calls by outcome")
        self._tool_duration = meter.create_histogram(
            "weft.tool.duration", unit="ms", description="Tool call latency",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_MS,
        )
        self._tool_retries = meter.create_counter("weft.tool.retries", unit="{retry}", description="Tool call retries")
        self._runs = meter.create_counter("weft.runs", unit="{run}", description="Finished runs by mode and status")
        self._run_duration = meter.create_histogram(
            "weft.run.duration", unit="ms", description="Run duration",
            explicit_bucket_boundaries_advisory=RUN_DURATION_BUCKETS_MS,
        )
        self._llm_tokens = meter.create_counter("weft.llm.tokens", unit="{token}", description="LLM tokens by kind")
        self._llm_duration = meter.create_histogram(
            "weft.llm.duration", unit="ms", description="LLM call latency",
            explicit_bucket_boundaries_advisory=LLM_DURATION_BUCKETS_MS,
        )
        self._breaker_transitions = meter.create_counter(
            "weft.breaker.transitions", unit="{transition}", description="Circuit-breaker state changes"
        )
        self._sandbox_runs = meter.create_counter(
            "weft.sandbox.runs", unit="{run}", description="Sandbox runs by outcome"
        )
        self._sandbox_duration = meter.create_histogram(
            "weft.sandbox.duration", unit="ms", description="Sandbox run duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_MS,
        )

        self._p_tool_calls = Counter("weft_tool_calls", "Tool calls by outcome", ["tool", "outcome"], registry=reg)
        self._p_tool_duration = Histogram(
            "weft_tool_duration_milliseconds", "Tool call latency (ms)", ["tool", "outcome"],
            buckets=DURATION_BUCKETS_MS, registry=reg,
        )
        self._p_tool_retries = Counter("weft_tool_retries", "Tool call retries", ["tool"], registry=reg)
        self._p_runs = Counter("weft_runs", "Finished runs by mode and status", ["mode", "status"], registry=reg)
        self._p_run_duration = Histogram(
            "weft_run_duration_milliseconds", "Run duration (ms)", ["mode", "status"],
            buckets=RUN_DURATION_BUCKETS_MS, registry=reg,
        )
        self._p_llm_tokens = Counter(
            "weft_llm_tokens", "LLM tokens by kind", ["role", "deployment", "kind"], registry=reg
        )
        self._p_llm_duration = Histogram(
            "weft_llm_duration_milliseconds", "LLM call latency (ms)", ["role", "deployment", "outcome"],
            buckets=LLM_DURATION_BUCKETS_MS, registry=reg,
        )
        self._p_breaker_transitions = Counter(
            "weft_breaker_transitions", "Circuit-breaker state changes", ["tool", "from", "to"], registry=reg
        )
        self._p_sandbox_runs = Counter(
            "weft_sandbox_runs", "Sandbox runs by outcome", ["mode", "outcome"], registry=reg
        )
        self._p_sandbox_duration = Histogram(
            "weft_sandbox_duration_milliseconds", "Sandbox run duration (ms)", ["mode", "outcome"],
            buckets=DURATION_BUCKETS_MS, registry=reg,
        )

    # ------------------------------------------------------------------------------------------------ recording

    def tool_call(self, tool: str, outcome: str, duration_ms: float) -> None:
        """One finished tool call (``outcome`` is ``ok`` or an ``ErrorInfo.code``) and its latency."""
        attributes = {attr.TOOL_NAME: tool, attr.TOOL_OUTCOME: outcome}
        self._tool_calls.add(1, attributes)
        self._tool_duration.record(duration_ms, attributes)
        self._p_tool_calls.labels(tool, outcome).inc()
        self._p_tool_duration.labels(tool, outcome).observe(duration_ms)

    def tool_retry(self, tool: str, count: int = 1) -> None:
        """``count`` attempts of a tool call after its first (Durable retries and circuit-open rejections)."""
        if count <= 0:
            return
        self._tool_retries.add(count, {attr.TOOL_NAME: tool})
        self._p_tool_retries.labels(tool).inc(count)

    def run_finished(self, mode: str, status: str, duration_ms: float) -> None:
        """A run ended with ``status`` (a ``RunStatus`` value) after ``duration_ms``."""
        attributes = {attr.RUN_MODE: mode, attr.RUN_STATUS: status}
        self._runs.add(1, attributes)
        self._run_duration.record(duration_ms, attributes)
        self._p_runs.labels(mode, status).inc()
        self._p_run_duration.labels(mode, status).observe(duration_ms)

    def llm_tokens(self, role: str, deployment: str, *, input_tokens: int, output_tokens: int,
                   cached_tokens: int = 0) -> None:
        """Tokens spent by one LLM call; ``cached_tokens`` is the part of ``input_tokens`` served from cache."""
        for kind, count in zip(TOKEN_KINDS, (input_tokens, output_tokens, cached_tokens), strict=True):
            if count > 0:
                self._llm_tokens.add(count, {attr.LLM_ROLE: role, attr.LLM_DEPLOYMENT: deployment,
                                             attr.LLM_TOKEN_KIND: kind})
                self._p_llm_tokens.labels(role, deployment, kind).inc(count)

    def llm_call(self, role: str, deployment: str, outcome: str, duration_ms: float) -> None:
        """One finished LLM call and its latency."""
        self._llm_duration.record(
            duration_ms, {attr.LLM_ROLE: role, attr.LLM_DEPLOYMENT: deployment, attr.LLM_OUTCOME: outcome}
        )
        self._p_llm_duration.labels(role, deployment, outcome).observe(duration_ms)

    def breaker_transition(self, tool: str, old: str, new: str) -> None:
        """A tool's circuit changed state (``closed``, ``open``, ``half_open``)."""
        old, new = str(old), str(new)
        self._breaker_transitions.add(1, {attr.TOOL_NAME: tool, attr.BREAKER_FROM: old, attr.BREAKER_TO: new})
        self._p_breaker_transitions.labels(tool, old, new).inc()

    def sandbox_run(self, mode: str, outcome: str, duration_ms: float) -> None:
        """One finished sandbox run (``inline`` or ``replay``) and its duration."""
        attributes = {attr.SANDBOX_MODE: mode, attr.SANDBOX_OUTCOME: outcome}
        self._sandbox_runs.add(1, attributes)
        self._sandbox_duration.record(duration_ms, attributes)
        self._p_sandbox_runs.labels(mode, outcome).inc()
        self._p_sandbox_duration.labels(mode, outcome).observe(duration_ms)

    # ------------------------------------------------------------------------------------------------ serving

    def prometheus_text(self) -> tuple[bytes, str]:
        """``(body, content_type)`` for ``GET /api/metrics``: the registry in the Prometheus text format."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
