"""Metrics: OpenTelemetry instruments (in-memory reader) and the Prometheus registry receive the same figures."""

from __future__ import annotations

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.catalog.breaker import BreakerSettings, BreakerState, CircuitBreaker, MemoryBreakerStore
from shared.telemetry import Metrics
from tests.unit.telemetry.support import FakeClock, key


def test_tool_calls_are_counted_by_tool_and_outcome(pipeline, telemetry):
    for seconds, outcome in ((0.1, "ok"), (0.3, "ok"), (2.0, "tool_timeout")):
        with telemetry.tool_call_span("get_weather", "run-1", "s1") as call:
            pipeline.clock.advance(seconds)
            if outcome != "ok":
                call.set_outcome(outcome)

    calls = pipeline.points("weft.tool.calls")
    assert {k: p.value for k, p in calls.items()} == {
        key(weft__tool__name="get_weather", weft__tool__outcome="ok"): 2,
        key(weft__tool__name="get_weather", weft__tool__outcome="tool_timeout"): 1,
    }
    ok_latency = pipeline.points("weft.tool.duration")[key(weft__tool__name="get_weather", weft__tool__outcome="ok")]
    assert (ok_latency.count, ok_latency.sum) == (2, pytest.approx(400.0))
    assert ok_latency.explicit_bounds[:3] == (5.0, 10.0, 25.0)

    assert pipeline.prometheus("weft_tool_calls_total") == {
        key(tool="get_weather", outcome="ok"): 2.0,
        key(tool="get_weather", outcome="tool_timeout"): 1.0,
    }
    assert pipeline.prometheus("weft_tool_duration_milliseconds_sum")[key(tool="get_weather", outcome="ok")] == (
        pytest.approx(400.0)
    )


def test_the_prometheus_text_carries_the_tool_call_counter_with_labels(telemetry):
    with telemetry.tool_call_span("get_weather", "run-1", "s1"):
        pass
    body, content_type = telemetry.metrics.prometheus_text()
    text = body.decode("utf-8")
    assert content_type.startswith("text/plain")
    assert "# TYPE weft_tool_calls_total counter" in text
    assert 'weft_tool_calls_total{outcome="ok",tool="get_weather"} 1.0' in text.splitlines()
    families = {
        family.name: family.type
        for family in text_string_to_metric_families(text)
        if not family.name.endswith("_created")  # prometheus_client's creation-time gauges
    }
    assert families == {
        "weft_tool_calls": "counter", "weft_tool_duration_milliseconds": "histogram", "weft_tool_retries": "counter",
        "weft_runs": "counter", "weft_run_duration_milliseconds": "histogram", "weft_llm_tokens": "counter",
        "weft_llm_duration_milliseconds": "histogram",
        "weft_breaker_transitions": "counter", "weft_sandbox_runs": "counter",
        "weft_sandbox_duration_milliseconds": "histogram",
    }


def test_retries_are_counted_per_tool(pipeline, telemetry):
    telemetry.metrics.tool_retry("flaky")
    telemetry.metrics.tool_retry("flaky", 2)
    telemetry.metrics.tool_retry("steady", 0)  # settled at the first attempt: nothing to count
    assert {k: p.value for k, p in pipeline.points("weft.tool.retries").items()} == {key(weft__tool__name="flaky"): 3}
    assert pipeline.prometheus("weft_tool_retries_total") == {key(tool="flaky"): 3.0}


def test_tokens_are_counted_by_role_deployment_and_kind(pipeline, telemetry):
    with telemetry.llm_call_span("planner", "planner-deploy") as llm:
        llm.record_usage(1000, 200, cached_tokens=512)
    with telemetry.llm_call_span("worker", "worker-deploy") as llm:
        llm.record_usage(300, 40)
        llm.record_usage(300, 90)  # running totals: only the increase counts

    expected = {
        ("planner", "planner-deploy", "input"): 1000,
        ("planner", "planner-deploy", "output"): 200,
        ("planner", "planner-deploy", "cached"): 512,
        ("worker", "worker-deploy", "input"): 300,
        ("worker", "worker-deploy", "output"): 90,
    }
    assert {k: p.value for k, p in pipeline.points("weft.llm.tokens").items()} == {
        key(weft__llm__role=r, weft__llm__deployment=d, weft__llm__token_kind=kind): n
        for (r, d, kind), n in expected.items()
    }
    assert pipeline.prometheus("weft_llm_tokens_total") == {
        key(role=r, deployment=d, kind=kind): float(n) for (r, d, kind), n in expected.items()
    }
    durations = pipeline.points("weft.llm.duration")
    assert key(weft__llm__role="worker", weft__llm__deployment="worker-deploy", weft__llm__outcome="ok") in durations


def test_sandbox_runs_are_counted_by_mode_and_outcome(pipeline, telemetry):
    with telemetry.sandbox_span("inline"):
        pipeline.clock.advance(0.05)
    with telemetry.sandbox_span("replay") as run:
        run.set_outcome("sandbox_violation")
    assert {k: p.value for k, p in pipeline.points("weft.sandbox.runs").items()} == {
        key(weft__sandbox__mode="inline", weft__sandbox__outcome="ok"): 1,
        key(weft__sandbox__mode="replay", weft__sandbox__outcome="sandbox_violation"): 1,
    }
    assert pipeline.prometheus("weft_sandbox_duration_milliseconds_sum")[key(mode="inline", outcome="ok")] == (
        pytest.approx(50.0)
    )


def test_the_breaker_hook_counts_every_transition(pipeline, telemetry):
    clock = FakeClock(now=0.0)
    breaker = CircuitBreaker(
        MemoryBreakerStore(), BreakerSettings(failure_threshold=2, cooldown_s=10.0, trial_lease_s=5.0),
        clock=clock, on_transition=telemetry.breaker_transition_hook,
    )
    breaker.record_failure("mail")
    breaker.record_failure("mail")  # closed -> open
    assert not breaker.allow("mail")
    clock.advance(10.0)
    assert breaker.allow("mail")  # open -> half_open (the trial)
    breaker.record_success("mail")  # half_open -> closed

    assert breaker.state("mail").state is BreakerState.CLOSED
    assert {k: p.value for k, p in pipeline.points("weft.breaker.transitions").items()} == {
        key(weft__tool__name="mail", weft__breaker__from="closed", weft__breaker__to="open"): 1,
        key(weft__tool__name="mail", weft__breaker__from="open", weft__breaker__to="half_open"): 1,
        key(weft__tool__name="mail", weft__breaker__from="half_open", weft__breaker__to="closed"): 1,
    }
    assert pipeline.prometheus("weft_breaker_transitions_total") == {
        key(tool="mail", **{"from": "closed", "to": "open"}): 1.0,
        key(tool="mail", **{"from": "open", "to": "half_open"}): 1.0,
        key(tool="mail", **{"from": "half_open", "to": "closed"}): 1.0,
    }


def test_each_metrics_object_owns_its_registry():
    first, second = Metrics(), Metrics()  # global (no-op) meter provider; no duplicate-registration error
    assert first.registry is not second.registry
    assert prometheus_client.REGISTRY not in (first.registry, second.registry)
    first.tool_call("t", "ok", 1.0)
    assert b"weft_tool_calls_total" in first.prometheus_text()[0]
    assert b'tool="t"' not in second.prometheus_text()[0]
