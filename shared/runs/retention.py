"""Retention: finished runs older than WEFT_RUN_RETENTION_DAYS leave the system — their orchestration history
(sub-orchestrations included), their stored payloads and their run-index entries — and the audit trail drops
records past its own retention. A daily timer trigger calls :func:`purge_expired_runs`."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from shared.payloads import PayloadStore
from shared.runs.call_journal import journal_for
from shared.runs.run_index import RunIndex, older_than
from shared.runs.run_status import FINISHED_DURABLE_STATUSES
from shared.settings import env_int

__all__ = ["PurgeReport", "RetentionSettings", "purge_expired_runs"]

log = logging.getLogger(__name__)

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
"""The Durable client needs a start of the range to purge by age; nothing of the app is older."""


@dataclass(frozen=True)
class RetentionSettings:
    run_retention_days: int = 30
    """Finished runs older than this are purged, with their payloads (WEFT_RUN_RETENTION_DAYS)."""
    max_runs_per_purge: int = 5000
    """Most runs one purge looks at; the next purge goes on from there (WEFT_PURGE_MAX_RUNS)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RetentionSettings:
        env = os.environ if env is None else env
        return cls(
            run_retention_days=env_int(env, "WEFT_RUN_RETENTION_DAYS", cls.run_retention_days, minimum=1),
            max_runs_per_purge=env_int(env, "WEFT_PURGE_MAX_RUNS", cls.max_runs_per_purge, minimum=1),
        )


class DurablePurger(Protocol):
    """What the purge needs of the Durable client (``DurableOrchestrationClient`` fits)."""

    async def get_status(self, instance_id: str, show_history: bool = False, show_history_output: bool = False,
                         show_input: bool = False) -> Any: ...

    async def purge_instance_history(self, instance_id: str) -> Any: ...

    async def purge_instance_history_by(self, created_time_from: datetime | None = None,
                                        created_time_to: datetime | None = None,
                                        runtime_status: list[Any] | None = None) -> Any: ...


@dataclass(frozen=True)
class PurgeReport:
    runs: int
    """Runs purged (history, payloads, index entry)."""
    payloads: int
    """Stored payloads deleted."""
    instances: int
    """Orchestration instances purged by age (sub-orchestrations included)."""


async def purge_expired_runs(client: DurablePurger, index: RunIndex, payloads: PayloadStore,
                             settings: RetentionSettings, now: datetime,
                             finished_statuses: list[Any] | None = None) -> PurgeReport:
    """Purge the finished runs created before ``now`` - retention. Runs still going are left alone whatever their
    age. Idempotent: an interrupted purge is finished by the next one."""
    cutoff = now - timedelta(days=settings.run_retention_days)
    runs = payload_count = seen = 0
    continuation: str | None = older_than(cutoff)
    journal = journal_for(payloads)
    while seen < settings.max_runs_per_purge:
        entries, continuation = await asyncio.to_thread(index.page, None, 100, continuation)
        for entry in entries:
            seen += 1
            if entry.created_at >= cutoff:
                continue
            status = await client.get_status(entry.run_id, show_input=False)
            runtime = status.runtime_status.value if status.runtime_status is not None else None
            if runtime is not None and runtime not in FINISHED_DURABLE_STATUSES:
                continue
            if runtime is not None:
                await client.purge_instance_history(entry.run_id)
            payload_count += await asyncio.to_thread(payloads.delete_run, entry.run_id)
            await asyncio.to_thread(journal.delete_run, entry.run_id)
            await asyncio.to_thread(index.remove, entry.run_id)
            runs += 1
        if continuation is None:
            break
    purged = await client.purge_instance_history_by(created_time_from=_EPOCH, created_time_to=cutoff,
                                                    runtime_status=finished_statuses)
    instances = int(getattr(purged, "instances_deleted", 0) or 0)
    log.info("retention purge: %d runs, %d payloads, %d more instances older than %s", runs, payload_count,
             instances, cutoff.isoformat())
    return PurgeReport(runs=runs, payloads=payload_count, instances=instances)
