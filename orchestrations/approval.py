"""Human approval of tool calls marked ``requires_approval``: the run pauses on ``approval`` external events
(``POST /api/runs/{id}/approve``) with a durable timer as the timeout, and each approved call carries its approval
to ``call_tool``, which refuses the tool without one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from shared.errors import ApprovalDenied, ApprovalTimeout
from shared.models import ErrorInfo, RunMode, ToolResult, ToolSpec
from shared.runs.approval import approve, pending_approvals
from shared.runs.contracts import ApprovalDecision
from shared.runs.custom_status import AWAITING_SHOWN, CustomStatus, PendingApproval
from shared.runs.names import APPROVAL_EVENT, Stage
from shared.runs.step_calls import CallApproval, StepCall, StepOutcome


def gate_calls(
    context: df.DurableOrchestrationContext, calls: list[StepCall], specs: dict[str, ToolSpec], timeout_s: int,
    mode: RunMode,
) -> Generator[Any, Any, tuple[list[StepCall], list[StepOutcome]]]:
    """Ask a human to approve each call of a ``requires_approval`` tool among ``calls`` before it is dispatched.

    Returns the calls to run (approved ones carrying their :class:`CallApproval`) and the outcomes of the refused
    ones (denied, or not decided before ``timeout_s``): those never reach ``call_tool``. One ``approval`` event may
    decides the calls it names with the argument hashes they wait with (:meth:`ApprovalDecision.decides`)."""
    waiting = {pending.call_id: pending for pending in pending_approvals(calls, specs)}
    if not waiting:
        return calls, []
    deadline = context.current_utc_datetime + dt.timedelta(seconds=timeout_s)
    approved: dict[str, CallApproval] = {}
    refused: dict[str, ErrorInfo] = {}
    while waiting:
        _show_awaiting(context, list(waiting.values()), deadline, mode)
        event = context.wait_for_external_event(APPROVAL_EVENT)
        timer = context.create_timer(deadline)
        winner = yield context.task_any([event, timer])
        if winner != event:
            for call_id, pending in waiting.items():
                refused[call_id] = ErrorInfo.of(
                    ApprovalTimeout, f"nobody approved this call of {pending.tool} within {timeout_s} s",
                    field="approval")
            break
        timer.cancel()
        decision = ApprovalDecision.model_validate(event.result) if isinstance(event.result, dict) \
            else ApprovalDecision()
        for call_id in [call_id for call_id, pending in waiting.items() if decision.decides(pending)]:
            decided = waiting.pop(call_id)
            if decision.approved:
                approved[call_id] = approve(decided, decision, context.current_utc_datetime.isoformat())
            else:
                refused[call_id] = ErrorInfo.of(
                    ApprovalDenied, f"this call of {decided.tool} was denied: {decision.reason or 'no reason given'}",
                    field="approval")
    runnable = [call.model_copy(update={"approval": approved[call.call.step_id]})
                if call.call.step_id in approved else call
                for call in calls if call.call.step_id not in refused]
    outcomes = [StepOutcome(step_id=call_id, result=ToolResult(ok=False, error=error), attempts=0)
                for call_id, error in refused.items()]
    return runnable, outcomes


def _show_awaiting(context: df.DurableOrchestrationContext, waiting: list[PendingApproval], deadline: dt.datetime,
                   mode: RunMode) -> None:
    context.set_custom_status(CustomStatus(
        stage=Stage.AWAITING_APPROVAL, mode=mode, tools=sorted({pending.tool for pending in waiting}),
        awaiting=waiting[:AWAITING_SHOWN], awaiting_more=max(0, len(waiting) - AWAITING_SHOWN) or None,
        expires_at=deadline.isoformat()).dump())
