"""Orchestrator telemetry: nothing while replaying, one emission per real event, never a change of control flow."""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

from shared.telemetry import OrchestrationTelemetry, Telemetry, emit_if_not_replaying
from tests.unit.telemetry.support import key

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@dataclass
class FakeContext:
    """The two attributes of ``DurableOrchestrationContext`` the telemetry reads."""

    instance_id: str = "run-1"
    is_replaying: bool = False


def nanos(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


# ------------------------------------------------------------------------------------------ a replayed orchestrator


def orchestrator(context: FakeContext, telemetry: Telemetry) -> Generator[str, Any, str]:
    """search -> call a tool -> answer; telemetry per stage and for the run, as run.py would emit it."""
    otel = telemetry.orchestration(context)
    yield "search_tools"
    otel.stage_finished("search", "task", started_at=T0, finished_at=T0 + timedelta(seconds=1))
    answer = yield "call_tool"
    otel.stage_finished("execute", "task", started_at=T0 + timedelta(seconds=1), finished_at=T0 + timedelta(seconds=3))
    otel.log(logging.INFO, "finished with %s", answer)
    otel.run_finished("task", "completed", started_at=T0, finished_at=T0 + timedelta(seconds=3))
    return answer


def run_episode(
    function: Callable[[FakeContext], Generator[str, Any, str]], history: list[Any]
) -> tuple[bool, Any]:
    """Run the orchestrator from the start as Durable does: replaying ``history``, then live until it waits.

    Returns ``(done, output)`` or ``(False, the newly scheduled task)``.
    """
    context = FakeContext(is_replaying=bool(history))
    generator = function(context)
    try:
        task = generator.send(None)
        for position, result in enumerate(history):
            context.is_replaying = position + 1 < len(history)  # past the last recorded result the code runs live
            task = generator.send(result)
        return False, task
    except StopIteration as stop:
        return True, stop.value


def test_a_replayed_orchestrator_emits_each_stage_and_the_run_once(pipeline, telemetry, caplog):
    caplog.set_level(logging.INFO, logger="shared.telemetry.orchestration")
    history: list[Any] = []
    episodes = 0
    while True:
        episodes += 1
        done, output = run_episode(lambda ctx: orchestrator(ctx, telemetry), history)
        if done:
            break
        history.append({"search_tools": ["get_weather"], "call_tool": "sunny"}[output])
    assert (episodes, output) == (3, "sunny")

    assert sorted(span.name for span in pipeline.spans()) == ["weft.run task", "weft.stage execute",
                                                                "weft.stage search"]
    assert {k: p.value for k, p in pipeline.points("weft.runs").items()} == {
        key(weft__run__mode="task", weft__run__status="completed"): 1
    }
    assert [r.getMessage() for r in caplog.records] == ["run run-1: finished with sunny"]


def test_nothing_is_emitted_while_replaying(pipeline, telemetry, caplog):
    caplog.set_level(logging.DEBUG)
    otel = telemetry.orchestration(FakeContext(is_replaying=True))
    called = []
    otel.stage_finished("search", "task", started_at=T0, finished_at=T0)
    otel.run_finished("task", "failed", started_at=T0, finished_at=T0)
    otel.log(logging.WARNING, "should not appear")
    otel.emit(lambda: called.append(1))
    emit_if_not_replaying(True, lambda: called.append(2))

    assert pipeline.spans() == []
    assert pipeline.points("weft.runs") == {}
    assert pipeline.prometheus("weft_runs_total") == {}
    assert called == []
    assert [r for r in caplog.records if r.name.startswith("shared.telemetry")] == []


def test_the_run_span_covers_the_orchestration_time_and_carries_the_status(pipeline, telemetry):
    finished = T0 + timedelta(minutes=2)
    telemetry.orchestration(FakeContext("run-9")).run_finished(
        "plan", "failed", started_at=T0, finished_at=finished, attributes={"weft.run.steps": 4}
    )
    span = pipeline.span("weft.run plan")
    assert (span.start_time, span.end_time) == (nanos(T0), nanos(finished))
    assert dict(span.attributes) == {
        "weft.run.id": "run-9", "weft.run.mode": "plan", "weft.run.status": "failed",
        "weft.run.duration_ms": 120_000.0, "weft.run.steps": 4,
    }
    assert span.status.status_code is StatusCode.ERROR
    duration = pipeline.points("weft.run.duration")[key(weft__run__mode="plan", weft__run__status="failed")]
    assert (duration.count, duration.sum) == (1, 120_000.0)
    assert pipeline.prometheus("weft_runs_total") == {key(mode="plan", status="failed"): 1.0}


@pytest.mark.parametrize(
    ("status", "error"),
    [("completed", False), ("completed_with_errors", False), ("canceled", False), ("failed", True)],
    ids=["completed", "completed-with-errors", "canceled", "failed"],
)
def test_only_a_failed_run_is_an_error_span(pipeline, telemetry, status, error):
    telemetry.orchestration(FakeContext()).run_finished("code", status, started_at=T0, finished_at=T0)
    span = pipeline.span("weft.run code")
    assert (span.status.status_code is StatusCode.ERROR) is error


def test_naive_orchestration_times_are_taken_as_utc(pipeline, telemetry):
    naive = datetime(2026, 1, 2, 3, 4, 5)
    telemetry.orchestration(FakeContext()).stage_finished(
        "plan", "task", started_at=naive, finished_at=naive + timedelta(milliseconds=250), outcome="plan_invalid"
    )
    span = pipeline.span("weft.stage plan")
    assert span.start_time == nanos(T0)
    assert span.end_time - span.start_time == 250_000_000
    assert span.attributes["weft.outcome"] == "plan_invalid"
    assert span.status.status_code is StatusCode.ERROR


def test_a_telemetry_failure_never_reaches_the_orchestrator(caplog):
    def broken() -> None:
        raise RuntimeError("exporter exploded")

    emit_if_not_replaying(False, broken)  # returns normally
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert caplog.records[0].exc_info is not None


def test_a_broken_telemetry_object_does_not_raise_from_run_finished(caplog):
    class ExplodingMetrics:
        def run_finished(self, mode: str, status: str, duration_ms: float) -> None:
            raise RuntimeError("no metrics")

    telemetry = Telemetry()
    telemetry.metrics = ExplodingMetrics()  # type: ignore[assignment]
    otel = OrchestrationTelemetry(FakeContext(), telemetry)
    assert otel.run_finished("plan", "completed", started_at=T0, finished_at=T0) is None
    assert "orchestrator telemetry failed" in caplog.text


def test_replaying_is_read_at_each_call(pipeline, telemetry):
    context = FakeContext(is_replaying=True)
    otel = telemetry.orchestration(context)
    otel.stage_finished("search", "task", started_at=T0, finished_at=T0)
    context.is_replaying = False
    otel.stage_finished("execute", "task", started_at=T0, finished_at=T0)
    assert [span.name for span in pipeline.spans()] == ["weft.stage execute"]
    assert otel.replaying is False


def test_tool_retries_are_counted_when_a_call_settles_not_on_replay(pipeline, telemetry):
    telemetry.orchestration(FakeContext(is_replaying=True)).tool_retried("flaky", 3)  # counted in its first episode
    live = telemetry.orchestration(FakeContext())
    live.tool_retried("flaky", 3)
    live.tool_retried("steady", 1)  # settled at its first attempt
    assert {k: p.value for k, p in pipeline.points("weft.tool.retries").items()} == {key(weft__tool__name="flaky"): 2}
    assert pipeline.prometheus("weft_tool_retries_total") == {key(tool="flaky"): 2.0}
