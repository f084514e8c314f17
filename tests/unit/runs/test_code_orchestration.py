"""Inline code runs are tried again only when the sandbox was busy (nothing ran); any other failure is final,
because running the code again would call its tools again. Driven as a generator, as the Durable SDK drives it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrations.code_mode import _run_inline
from shared.errors import SandboxBusy, ToolFailed
from shared.models import ErrorInfo, RetryPolicy
from shared.runs.contracts import CodeOutcome, CodeRunRequest
from shared.runs.step_calls import RetryableActivityError

POLICY = RetryPolicy(first_interval_ms=250, max_attempts=3)
REQUEST = CodeRunRequest(code="result = 1", tools={}, limits={}, run_id="r1")


class _Context:
    """What ``_run_inline`` asks of the orchestration context: activities and timers, recorded in order."""

    def __init__(self) -> None:
        self.current_utc_datetime = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
        self.scheduled: list[tuple[str, Any]] = []

    def call_activity(self, name: str, payload: Any) -> tuple[str, Any]:
        self.scheduled.append(("activity", name))
        return ("activity", name)

    def create_timer(self, fire_at: datetime) -> tuple[str, Any]:
        self.scheduled.append(("timer", fire_at - self.current_utc_datetime))
        return ("timer", fire_at)


def _failure(code: str) -> Exception:
    return Exception(str(RetryableActivityError(ErrorInfo(code=code, message=f"{code} happened", retryable=True))))


def test_a_busy_sandbox_is_tried_again_after_the_interval() -> None:
    context = _Context()
    run = _run_inline(context, REQUEST, POLICY)  # type: ignore[arg-type]
    assert next(run) == ("activity", "run_code_inline")
    assert run.throw(_failure(SandboxBusy.code)) == ("timer", context.current_utc_datetime + timedelta(seconds=0.25))
    assert next(run) == ("activity", "run_code_inline")
    with pytest.raises(StopIteration) as done:
        run.send({"status": "finished", "result": 1})
    assert done.value.value == CodeOutcome(status="finished", result=1)
    assert [kind for kind, _ in context.scheduled] == ["activity", "timer", "activity"]


def test_any_other_failure_is_final_so_no_tool_runs_twice() -> None:
    context = _Context()
    run = _run_inline(context, REQUEST, POLICY)  # type: ignore[arg-type]
    next(run)
    with pytest.raises(Exception, match="tool_failed happened"):
        run.throw(_failure(ToolFailed.code))
    assert context.scheduled == [("activity", "run_code_inline")]


def test_busy_on_every_attempt_gives_up_after_max_attempts() -> None:
    context = _Context()
    run = _run_inline(context, REQUEST, POLICY)  # type: ignore[arg-type]
    next(run)
    run.throw(_failure(SandboxBusy.code))
    next(run)
    run.throw(_failure(SandboxBusy.code))
    next(run)
    with pytest.raises(Exception, match="sandbox_busy happened"):
        run.throw(_failure(SandboxBusy.code))
    assert [kind for kind, _ in context.scheduled].count("activity") == 3
