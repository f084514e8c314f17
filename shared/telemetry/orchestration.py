"""Telemetry from orchestrators: only when not replaying, and never able to change what the orchestrator does.

An orchestrator function runs again from the start on every episode, replaying its history; telemetry emitted
during a replay would count every run stage many times. So everything here checks ``context.is_replaying`` at the
moment of the call and does nothing while it is true. Nothing here returns a value the orchestrator could branch on,
reads a clock, or raises: a telemetry failure is logged and swallowed, so the orchestrator stays deterministic.

A span cannot stay open across an orchestrator's ``yield`` (the function returns at each one), so stages and runs
are emitted when they finish, with their start and end taken from ``context.current_utc_datetime``::

    otel = telemetry_from_env().orchestration(context)   # configures the process's telemetry on first use
    started = context.current_utc_datetime
    ...
    otel.stage_finished("plan", request.mode, started_at=started, finished_at=context.current_utc_datetime)
    otel.run_finished(request.mode, result.status, started_at=started, finished_at=context.current_utc_datetime)
    otel.tool_retried(call.tool, outcome.attempts)

Every span carries ``weft.run.id`` (the orchestration instance id). The orchestrator function is not given its
invocation's trace context, so these spans start in whatever context is current: a trace of their own unless the
Functions worker made the invocation's context current (when it exports:
``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from opentelemetry.trace import Status, StatusCode

from shared.telemetry import attributes as attr

if TYPE_CHECKING:
    from shared.telemetry.core import Telemetry

__all__ = ["OrchestrationContext", "OrchestrationTelemetry", "emit_if_not_replaying"]

_log = logging.getLogger(__name__)

_ERROR_STATUSES = frozenset({"failed"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class OrchestrationContext(Protocol):
    """What telemetry needs of ``DurableOrchestrationContext``."""

    @property
    def is_replaying(self) -> bool:
        """Whether the orchestrator is replaying recorded history."""
        ...

    @property
    def instance_id(self) -> str:
        """The orchestration instance id (Weft's run id)."""
        ...


def emit_if_not_replaying(context_is_replaying: bool, fn: Callable[[], object]) -> None:
    """Call ``fn()`` unless replaying; its result is discarded and its exceptions are logged, never raised."""
    if context_is_replaying:
        return
    try:
        fn()
    except Exception:
        _log.warning("orchestrator telemetry failed; ignored so the orchestration is unaffected", exc_info=True)


def _nanos(moment: datetime) -> int:
    """Epoch nanoseconds; a naive datetime is taken as UTC (as ``current_utc_datetime`` may be)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000  # exact: no float seconds


def _duration_ms(started_at: datetime, finished_at: datetime) -> float:
    return max(0.0, (_nanos(finished_at) - _nanos(started_at)) / 1_000_000)


class OrchestrationTelemetry:
    """Replay-safe telemetry for one orchestrator invocation; every method is a no-op while replaying."""

    def __init__(self, context: OrchestrationContext, telemetry: Telemetry) -> None:
        self._context = context
        self._telemetry = telemetry

    @property
    def replaying(self) -> bool:
        """``context.is_replaying`` now (it turns false once the orchestrator passes its recorded history)."""
        return bool(self._context.is_replaying)

    def emit(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` (any telemetry call) only when not replaying; see :func:`emit_if_not_replaying`."""
        emit_if_not_replaying(self.replaying, fn)

    def log(self, level: int, message: str, *args: object) -> None:
        """Log ``message % args`` with the run id, only when not replaying."""
        self.emit(lambda: _log.log(level, "run %s: " + message, self._context.instance_id, *args))

    def stage_finished(
        self,
        stage: str,
        mode: str,
        *,
        started_at: datetime,
        finished_at: datetime,
        outcome: str = "ok",
        attributes: Mapping[str, object] | None = None,
    ) -> None:
        """Emit the span ``weft.stage <stage>`` covering ``started_at``..``finished_at`` (orchestration time)."""
        self.emit(lambda: self._span(
            f"weft.stage {stage}", started_at, finished_at, error=None if outcome == "ok" else outcome,
            attributes={attr.RUN_STAGE: stage, attr.RUN_MODE: mode, attr.OUTCOME: outcome, **(attributes or {})},
        ))

    def run_finished(
        self,
        mode: str,
        status: str,
        *,
        started_at: datetime,
        finished_at: datetime,
        attributes: Mapping[str, object] | None = None,
    ) -> None:
        """Emit the run span ``weft.run <mode>`` (with ``weft.run.status``) and count ``weft.runs``/duration.

        ``status`` is a ``RunStatus`` value; ``failed`` marks the span as an error. Call once, when the run ends.
        """
        status = str(status)

        def emit() -> None:
            duration_ms = _duration_ms(started_at, finished_at)
            self._span(
                f"weft.run {mode}", started_at, finished_at, error=status if status in _ERROR_STATUSES else None,
                attributes={attr.RUN_MODE: mode, attr.RUN_STATUS: status, attr.RUN_DURATION_MS: duration_ms,
                            **(attributes or {})},
            )
            self._telemetry.metrics.run_finished(mode, status, duration_ms)

        self.emit(emit)

    def tool_retried(self, tool: str, attempts: int) -> None:
        """A tool call settled after ``attempts`` attempts: count the ``attempts - 1`` retries in ``weft.tool.retries``.

        Call once per call, when its outcome is known (an activity cannot count them: it does not know its Durable
        attempt). Circuit-open rejections count, as they count against the call's ``max_attempts``.
        """
        if attempts > 1:
            self.emit(lambda: self._telemetry.metrics.tool_retry(tool, attempts - 1))

    def _span(
        self,
        name: str,
        started_at: datetime,
        finished_at: datetime,
        *,
        error: str | None,
        attributes: Mapping[str, object],
    ) -> None:
        span = self._telemetry.tracer.start_span(
            name,
            start_time=_nanos(started_at),
            attributes=self._telemetry.safe_attributes({attr.RUN_ID: self._context.instance_id, **attributes}),
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=_nanos(finished_at))
