"""The trust boundary as the triggers use it: who is calling, what their quota allows, what the audit trail records.

:class:`Trust` composes the :class:`~shared.identity.authenticate.Authenticator`, the per-caller
:class:`~shared.identity.quotas.Quotas` and the audit log, so every entry point (HTTP, queue, MCP) goes through one
path: ``caller = await trust.caller_of(headers)`` authenticates (401) and spends one request of the caller's rate
(429); the run-submission path takes a concurrent-run slot per run. With identity off every request is the keyless
local caller, which no quota limits (one caller has nobody to be protected from, and load tests must not trip it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import (
    ApprovalRequired,
    CancelCheckUnavailable,
    CircuitOpen,
    Forbidden,
    NotConfigured,
    RateLimited,
    RunCanceled,
    ToolArgumentsInvalid,
    ToolNotFound,
)
from shared.identity.audit import AuditAction, AuditRecord, AuditTrail
from shared.identity.authenticate import Authenticator
from shared.identity.caller import LOCAL_CALLER, Caller
from shared.identity.quotas import Quotas
from shared.identity.settings import IdentitySettings
from shared.models import ToolCall, ToolResult, hash_args
from shared.payloads import root_run_id
from shared.runs.run_index import RunEntry, RunIndex, read_entry

__all__ = ["Trust", "TrustSettings"]

log = logging.getLogger(__name__)

_NOT_RUN = frozenset(error.code for error in (ApprovalRequired, CircuitOpen, ToolArgumentsInvalid, ToolNotFound,
                                               NotConfigured, RunCanceled, CancelCheckUnavailable))
"""Outcomes of calls refused before the tool ran: their records say "not run"."""


@dataclass(frozen=True)
class TrustSettings:
    approval_separation: bool = True
    """The run's own caller may not approve its tool calls (WEFT_APPROVAL_SEPARATION); the keyless local caller,
    alone when identity is off, always may."""


class Trust:
    """Authentication, quotas and audit for one worker process."""

    def __init__(self, identity: IdentitySettings, authenticator: Authenticator, quotas: Quotas | None,
                 audit: AuditTrail, settings: TrustSettings | None = None) -> None:
        self.identity = identity
        self.authenticator = authenticator
        self.quotas = quotas
        self.audit = audit
        self.settings = settings or TrustSettings()

    @property
    def queue_caller(self) -> Caller:
        """The caller queue-started runs belong to: the service caller with identity on, else the local caller."""
        return self.identity.service_caller() if self.identity.enabled else LOCAL_CALLER

    def _limited(self, caller: Caller) -> bool:
        return self.quotas is not None and caller.kind != "local"

    async def caller_of(self, headers: Mapping[str, str]) -> Caller:
        """The authenticated caller of a request, charged one request of its rate quota."""
        caller = await self.authenticator.authenticate_async(headers)
        if self._limited(caller):
            assert self.quotas is not None
            await asyncio.to_thread(self.quotas.charge_request, caller.key, caller.roles)
        return caller

    def run_slot_acquirer(self, caller: Caller, finished: Callable[[list[str]], Awaitable[set[str]]]
                          ) -> Callable[[str], Awaitable[None]] | None:
        """What :func:`~shared.runs.admission.submit_run` awaits to take one of ``caller``'s concurrent-run slots
        for a run id (None when the caller is not limited). At the cap, the slots of runs that ``finished`` says
        are over are released first (runs end without telling the quota), then the slot is asked for again."""
        if not self._limited(caller):
            return None
        quotas = self.quotas
        assert quotas is not None

        async def acquire(run_id: str) -> None:
            try:
                await asyncio.to_thread(quotas.acquire_run, caller.key, caller.roles, run_id)
            except RateLimited:
                if not await self.free_finished_slots(caller, finished):
                    raise
                await asyncio.to_thread(quotas.acquire_run, caller.key, caller.roles, run_id)

        return acquire

    async def free_finished_slots(self, caller: Caller, finished: Callable[[list[str]], Awaitable[set[str]]]) -> int:
        """Release the slots of ``caller``'s runs that ``finished`` says are over (runs end without telling the
        quota: a slot is released here, when the caller is at the cap, or when its lease ends)."""
        if not self._limited(caller):
            return 0
        assert self.quotas is not None
        held = await asyncio.to_thread(self.quotas.running, caller.key)
        done = await finished(held) if held else set()
        for run_id in done:
            await asyncio.to_thread(self.quotas.release_run, caller.key, run_id)
        return len(done)

    async def release_run_slot(self, entry: RunEntry) -> None:
        """Give back the slot of a run that ended (cancel)."""
        if self.quotas is not None:
            await asyncio.to_thread(self.quotas.release_run, entry.owner, entry.run_id)

    def check_separation_of_duties(self, approver: Caller, entry: RunEntry) -> None:
        """Refuse an approval by the run's own caller (unless identity is off: then there is only one caller)."""
        if self.settings.approval_separation and approver.kind != "local" and approver.key == entry.owner:
            raise Forbidden("a run's own caller may not approve its tool calls; ask a caller with Runs.Approve")

    async def audit_event(self, action: AuditAction, caller: Caller, *, outcome: str = "ok", **fields: Any) -> None:
        """Append one :class:`AuditRecord` (off the event loop); ``fields`` are the record's other fields. The change
        it records has happened, so a failing audit store does not turn the answer into an error: it is logged as an
        error (and its ``weft.audit`` event still goes out), never dropped quietly."""
        await self._record(AuditRecord(caller=caller.key, caller_name=caller.name, action=action, outcome=outcome,
                                       **fields))

    async def _record(self, record: AuditRecord) -> None:
        try:
            await asyncio.to_thread(self.audit.append, record)
        except Exception:
            log.exception("audit record %s for run %s could not be written", record.action, record.run_id)

    async def tool_executed(self, index: RunIndex, call: ToolCall, result: ToolResult | None) -> None:
        """Audit an execution of a side-effecting tool (``tool.execute``: run, step, the run's owner, argument hash):
        ``result`` None before the tool runs (outcome ``started``), then its outcome. Because the ``started`` record
        is written before the tool runs, an execution repeated after a crash (a redelivered activity, an inline run
        restarted) shows as a second ``started`` record even when the first never reported back."""
        outcome = "started" if result is None else "ok" if result.ok else (
            result.error.code if result.error else "failed")
        run_id = root_run_id(call.run_id)
        entry = await read_entry(index, run_id)
        await self._record(AuditRecord(
            caller=entry.owner if entry else "unknown", caller_name=entry.owner_name if entry else "",
            action="tool.execute", outcome=outcome, run_id=call.run_id, step_id=call.step_id, tool=call.tool,
            args_sha256=hash_args(call.args), detail="not run" if outcome in _NOT_RUN else ""))
