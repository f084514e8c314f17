"""Human approval of tools marked ``requires_approval``: the run pauses on the ``approval`` external event
(``POST /api/runs/{id}/approve``) with a durable timer as the timeout."""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from shared.errors import ApprovalDenied, ApprovalTimeout
from shared.models import ErrorInfo, RunMode
from shared.runs.contracts import ApprovalDecision, CustomStatus
from shared.runs.names import APPROVAL_EVENT, Stage


def await_approval(
    context: df.DurableOrchestrationContext, tools: list[str], timeout_s: int, mode: RunMode = "task"
) -> Generator[Any, Any, ErrorInfo | None]:
    """Pause until ``POST /api/runs/{id}/approve`` (the ``approval`` event) or the timeout; None when approved."""
    deadline = context.current_utc_datetime + dt.timedelta(seconds=timeout_s)
    context.set_custom_status(CustomStatus(stage=Stage.AWAITING_APPROVAL, mode=mode, tools=tools,
                                           expires_at=deadline.isoformat()).dump())
    event = context.wait_for_external_event(APPROVAL_EVENT)
    timer = context.create_timer(deadline)
    winner = yield context.task_any([event, timer])
    if winner != event:
        return ErrorInfo.of(ApprovalTimeout, f"nobody approved the use of {', '.join(tools)} within {timeout_s} s",
                            field="approval")
    timer.cancel()
    decision = ApprovalDecision.model_validate(event.result) if isinstance(event.result, dict) else ApprovalDecision()
    if decision.approved is True:
        return None
    reason = decision.reason or "no reason given"
    return ErrorInfo.of(ApprovalDenied, f"the use of {', '.join(tools)} was denied: {reason}", field="approval")
