"""Human approval of tools marked ``requires_approval``: the run pauses on the ``approval`` external event
(``POST /api/runs/{id}/approve``) with a durable timer as the timeout."""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from shared.models import ErrorInfo


def await_approval(
    context: df.DurableOrchestrationContext, tools: list[str], timeout_s: int, mode: str = "task"
) -> Generator[Any, Any, ErrorInfo | None]:
    """Pause until ``POST /api/runs/{id}/approve`` (the ``approval`` event) or the timeout; None when approved."""
    deadline = context.current_utc_datetime + dt.timedelta(seconds=timeout_s)
    context.set_custom_status({"stage": "awaiting_approval", "mode": mode, "tools": tools,
                               "expires_at": deadline.isoformat()})
    event = context.wait_for_external_event("approval")
    timer = context.create_timer(deadline)
    winner = yield context.task_any([event, timer])
    if winner != event:
        return ErrorInfo(code="approval_timeout", field="approval",
                         message=f"nobody approved the use of {', '.join(tools)} within {timeout_s} s")
    timer.cancel()
    decision = event.result if isinstance(event.result, dict) else {}
    if decision.get("approved") is True:
        return None
    reason = decision.get("reason") or "no reason given"
    return ErrorInfo(code="approval_denied", field="approval",
                     message=f"the use of {', '.join(tools)} was denied: {reason}")
