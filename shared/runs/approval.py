"""Human approval of tool calls: which tools need it (decided here only) and what an approval of one call is.

The gate is per call, where the call is executed: the orchestrator asks for the calls of ``requires_approval`` tools
it is about to dispatch (:func:`pending_approvals`) and hands each approved one its :class:`CallApproval`;
``call_tool`` (and the inline host loop) refuse such a tool without an approval naming that call and its arguments
(:func:`approval_problem`). :func:`tools_needing_approval` reads a plan or code up front; it is a preview for the
planner and the caller, never the gate.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.models import ToolCall, ToolSpec, canonical_json, hash_args
from shared.runs.contracts import ApprovalDecision
from shared.runs.custom_status import PendingApproval
from shared.runs.step_calls import CallApproval, StepCall

__all__ = ["MAX_APPROVAL_CALL_IDS", "MAX_CALL_ID_CHARS", "approval_problem", "approve", "pending_approvals"]

MAX_APPROVAL_CALL_IDS = 1000
"""Entries in an approval's ``call_ids`` (without the list it decides every call waiting, however many)."""
MAX_CALL_ID_CHARS = 200
"""Characters of one entry of ``call_ids``."""


def pending_approvals(calls: list[StepCall], specs: Mapping[str, ToolSpec], preview_chars: int = 500
                      ) -> list[PendingApproval]:
    """The calls among ``calls`` that need an approval before they may run, as the approver will see them."""
    pending = []
    for step in calls:
        spec = specs.get(step.call.tool)
        if spec is not None and spec.requires_approval and step.approval is None:
            preview = canonical_json(step.call.args)
            if len(preview) > preview_chars:
                preview = preview[: max(0, preview_chars - 1)] + "…"
            pending.append(PendingApproval(call_id=step.call.step_id, tool=step.call.tool, args_preview=preview,
                                           args_sha256=hash_args(step.call.args)))
    return pending


def approve(pending: PendingApproval, decision: ApprovalDecision, decided_at: str) -> CallApproval:
    """The approval of one awaiting call by ``decision`` (which approved it)."""
    return CallApproval(call_id=pending.call_id, args_sha256=pending.args_sha256, approved_by=decision.by,
                        decided_at=decided_at)


def approval_problem(call: ToolCall, spec: ToolSpec, approval: CallApproval | None) -> str | None:
    """Why ``call`` may not run yet (its tool needs an approval of this call and these arguments), or None."""
    if not spec.requires_approval:
        return None
    if approval is None:
        return f"{call.tool} needs a human's approval of this call before it runs"
    if approval.call_id != call.step_id or approval.args_sha256 != hash_args(call.args):
        return f"the approval given does not name this call of {call.tool} with these arguments"
    return None
