"""Housekeeping on a timer: finished runs past their retention leave (history, payloads, index), and so do audit
records past theirs."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import azure.durable_functions as df
import azure.functions as func

from shared.runs.retention import RetentionSettings, purge_expired_runs
from shared.runtime import get_runtime_async

bp = df.Blueprint()
log = logging.getLogger(__name__)


@bp.timer_trigger(arg_name="timer", schedule="0 17 3 * * *")  # daily at 03:17 UTC
@bp.durable_client_input(client_name="client")
async def purge_expired(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    runtime = await get_runtime_async()
    finished = [df.OrchestrationRuntimeStatus(s) for s in ("Completed", "Failed", "Terminated")]
    await purge_expired_runs(client, runtime.run_index, runtime.payloads, RetentionSettings.from_env(),
                             datetime.now(UTC), finished)
    await asyncio.to_thread(runtime.trust.audit.purge)
