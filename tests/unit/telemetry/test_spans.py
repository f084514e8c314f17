"""Spans: names, attributes, parent/child structure and outcomes, on the real SDK with the in-memory exporter."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from shared.errors import CircuitOpen, ToolTimeout


def test_an_activity_contains_tool_calls_and_an_llm_call(pipeline, telemetry):
    clock = pipeline.clock
    with telemetry.activity_span("execute", "run-1") as stage:
        with telemetry.tool_call_span("get_weather", "run-1", "s1") as call:
            clock.advance(0.125)
        with telemetry.tool_call_span("send_mail", "run-1", "s2") as failed:
            clock.advance(0.5)
            failed.set_outcome("tool_timeout")
        with telemetry.llm_call_span("worker", "worker-deploy", "gpt-4o-mini", run_id="run-1") as llm:
            clock.advance(1.5)
            llm.record_usage(1200, 80, cached_tokens=1024)
            llm.set_response(model="gpt-4o-mini-2024-07-18", response_id="chatcmpl-1", finish_reasons=["stop"])

    stage_span = pipeline.span("weft.activity execute")
    tool_span = pipeline.span("execute_tool get_weather")
    failed_span = pipeline.span("execute_tool send_mail")
    llm_span = pipeline.span("chat gpt-4o-mini")

    for child in (tool_span, failed_span, llm_span):
        assert child.parent is not None and child.parent.span_id == stage_span.context.span_id
        assert child.context.trace_id == stage_span.context.trace_id
    assert stage_span.parent is None

    assert dict(stage_span.attributes) == {
        "weft.activity.name": "execute", "weft.run.id": "run-1", "weft.outcome": "ok",
    }
    assert dict(tool_span.attributes) == {
        "weft.tool.name": "get_weather", "weft.run.id": "run-1", "weft.step.id": "s1",
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather",
        "weft.tool.outcome": "ok", "weft.tool.duration_ms": 125.0,
    }
    assert tool_span.status.status_code is StatusCode.UNSET
    assert failed_span.attributes["weft.tool.outcome"] == "tool_timeout"
    assert failed_span.attributes["weft.tool.duration_ms"] == 500.0
    assert failed_span.attributes["error.type"] == "tool_timeout"
    assert failed_span.status.status_code is StatusCode.ERROR

    assert llm_span.kind is SpanKind.CLIENT
    assert dict(llm_span.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "azure.ai.openai",
        "gen_ai.system": "azure.ai.openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 80,
        "gen_ai.usage.cache_read.input_tokens": 1024,
        "weft.llm.role": "worker",
        "weft.llm.deployment": "worker-deploy",
        "weft.run.id": "run-1",
        "weft.llm.outcome": "ok",
        "weft.llm.duration_ms": 1500.0,
    }
    assert (call.outcome, failed.outcome, llm.outcome, stage.outcome) == ("ok", "tool_timeout", "ok", "ok")


def test_the_llm_request_model_is_the_deployment_when_the_model_is_unknown(pipeline, telemetry):
    with telemetry.llm_call_span("planner", "planner-deploy", server_address="oai.example.com"):
        pass
    span = pipeline.span("chat planner-deploy")
    assert span.attributes["gen_ai.request.model"] == "planner-deploy"
    assert span.attributes["server.address"] == "oai.example.com"
    assert "gen_ai.usage.input_tokens" not in span.attributes


@pytest.mark.parametrize(
    ("raised", "outcome", "error_type"),
    [
        (ToolTimeout("slow"), "tool_timeout", "shared.errors.ToolTimeout"),
        (CircuitOpen("open"), "circuit_open", "shared.errors.CircuitOpen"),
        (ValueError("bad"), "error", "ValueError"),
        (asyncio.CancelledError(), "canceled", "asyncio.exceptions.CancelledError"),
    ],
    ids=["weft-error-code", "circuit-open", "plain-exception", "cancelled"],
)
def test_an_exception_sets_the_outcome_status_and_error_type(pipeline, telemetry, raised, outcome, error_type):
    with pytest.raises(type(raised)), telemetry.tool_call_span("t", "run-1", "s1"):
        pipeline.clock.advance(0.01)
        raise raised
    span = pipeline.span("execute_tool t")
    assert span.attributes["weft.tool.outcome"] == outcome
    assert span.attributes["error.type"] == error_type
    assert span.attributes["weft.tool.duration_ms"] == pytest.approx(10.0)
    assert span.status.status_code is StatusCode.ERROR
    assert span.events == ()  # the exception's message stays out by default


def test_an_explicit_failure_outcome_survives_the_exception_that_follows(pipeline, telemetry):
    with pytest.raises(RuntimeError), telemetry.tool_call_span("t", "run-1", "s1") as call:
        call.set_outcome("tool_arguments_invalid")
        raise RuntimeError("wrapped")
    span = pipeline.span("execute_tool t")
    assert span.attributes["weft.tool.outcome"] == "tool_arguments_invalid"
    assert span.attributes["error.type"] == "RuntimeError"


def test_a_sandbox_run_records_mode_outcome_duration_and_tool_calls(pipeline, telemetry):
    with telemetry.sandbox_span("replay", backend="dynamic_sessions", run_id="run-1") as run:
        pipeline.clock.advance(0.25)
        run.set_tool_calls(3)
        run.set_outcome("pending", error=False)
    span = pipeline.span("weft.sandbox replay")
    assert dict(span.attributes) == {
        "weft.sandbox.mode": "replay", "weft.sandbox.backend": "dynamic_sessions", "weft.run.id": "run-1",
        "weft.sandbox.tool_calls": 3,
        "weft.sandbox.outcome": "pending", "weft.sandbox.duration_ms": 250.0,
    }
    assert span.status.status_code is StatusCode.UNSET


def test_a_search_records_k_catalog_size_results_and_duration(pipeline, telemetry):
    with telemetry.search_span(10, 512, run_id="run-1") as search:
        pipeline.clock.advance(0.004)
        search.set_results(7)
    span = pipeline.span("weft.search")
    assert span.attributes["weft.run.id"] == "run-1"
    assert span.attributes["weft.search.k"] == 10
    assert span.attributes["weft.search.catalog_size"] == 512
    assert span.attributes["weft.search.results"] == 7
    assert span.attributes["weft.search.duration_ms"] == pytest.approx(4.0)


def test_an_activity_span_joins_the_invocation_trace(pipeline, telemetry):
    trace_id, parent_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    traceparent = f"00-{trace_id}-{parent_id}-01"
    with (
        telemetry.activity_span("call_tool", "run-1", traceparent=traceparent, tracestate="congo=t61rcWkgMzE"),
        telemetry.tool_call_span("t", "run-1", "s1"),
    ):
        pass
    activity = pipeline.span("weft.activity call_tool")
    assert format(activity.context.trace_id, "032x") == trace_id
    assert activity.parent is not None and format(activity.parent.span_id, "016x") == parent_id
    assert activity.attributes["weft.activity.name"] == "call_tool"
    assert pipeline.span("execute_tool t").parent.span_id == activity.context.span_id


def test_an_activity_span_without_a_traceparent_is_a_root_or_child_of_the_current_span(pipeline, telemetry):
    with telemetry.activity_span("search_tools", None):
        pass
    span = pipeline.span("weft.activity search_tools")
    assert span.parent is None
    assert "weft.run.id" not in span.attributes


def test_a_malformed_traceparent_continues_the_current_context(pipeline, telemetry):
    with telemetry.activity_span("outer", "run-1"), telemetry.activity_span("call_tool", "run-1", traceparent="00-zz"):
        pass
    outer, inner = pipeline.span("weft.activity outer"), pipeline.span("weft.activity call_tool")
    assert inner.parent is not None and inner.parent.span_id == outer.context.span_id


def test_set_attribute_goes_through_the_content_policy(pipeline, telemetry):
    with telemetry.activity_span("llm_plan", "run-1") as stage:
        stage.set_attribute("weft.plan.steps", 4)
        stage.set_attribute("weft.tool.arguments", {"to": "a@example.com"})
    span = pipeline.span("weft.activity llm_plan")
    assert span.attributes["weft.plan.steps"] == 4
    assert "weft.tool.arguments" not in span.attributes
    assert "weft.tool.arguments_sha256" in span.attributes
