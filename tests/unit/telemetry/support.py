"""Test helpers: an isolated OpenTelemetry pipeline (the real SDK with its in-memory exporter and reader)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shared.telemetry import Metrics, Telemetry, TelemetrySettings


@dataclass
class FakeClock:
    """A monotonic clock the test moves by hand (seconds)."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Pipeline:
    """What a test's :class:`Telemetry` exported."""

    exporter: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    reader: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    clock: FakeClock = field(default_factory=FakeClock)

    def __post_init__(self) -> None:
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.metrics = Metrics(self.meter_provider, self.registry)  # shared by every Telemetry of the test

    def telemetry(self, *, capture_content: bool = False) -> Telemetry:
        return Telemetry(
            TelemetrySettings(capture_content=capture_content),
            tracer_provider=self.tracer_provider,
            metrics=self.metrics,
            clock=self.clock,
        )

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        found = [span for span in self.spans() if span.name == name]
        assert len(found) == 1, f"expected one span {name!r}, got {[s.name for s in self.spans()]}"
        return found[0]

    def points(self, metric: str) -> dict[frozenset[tuple[str, Any]], Any]:
        """Data points of ``metric`` keyed by their attribute set (empty if the metric has none)."""
        data = self.reader.get_metrics_data()
        found: dict[frozenset[tuple[str, Any]], Any] = {}
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for item in scope_metrics.metrics:
                    if item.name == metric:
                        for point in item.data.data_points:
                            found[frozenset(point.attributes.items())] = point
        return found

    def prometheus(self, sample: str) -> dict[frozenset[tuple[str, str]], float]:
        """Values of the Prometheus ``sample`` (e.g. ``weft_tool_calls_total``) keyed by label set, parsed from the
        text ``GET /api/metrics`` serves."""
        text = generate_latest(self.registry).decode("utf-8")
        return {
            frozenset(s.labels.items()): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == sample
        }


def key(**attributes: Any) -> frozenset[tuple[str, Any]]:
    """A points()/prometheus() key from keyword attributes (dots spelled as ``__``)."""
    return frozenset((name.replace("__", "."), value) for name, value in attributes.items())
