"""Queue entry point: one run request per message on the ``runs`` queue."""

from __future__ import annotations

import asyncio
import logging

import azure.durable_functions as df
import azure.functions as func

from shared.errors import WeftError
from shared.runs.admission import RUN_ORCHESTRATOR, admit_run_request, run_instance_id
from shared.runtime import get_runtime_async

bp = df.Blueprint()
log = logging.getLogger(__name__)


@bp.queue_trigger(arg_name="msg", queue_name="runs", connection="AzureWebJobsStorage")
@bp.queue_output(arg_name="poison", queue_name="runs-poison", connection="AzureWebJobsStorage")
@bp.durable_client_input(client_name="client")
async def run_from_queue(msg: func.QueueMessage, poison: func.Out[str], client: df.DurableOrchestrationClient) -> None:
    """Instance id = the message's idempotency key, else its message id: a redelivered message never starts a
    second run. A malformed message goes straight to ``runs-poison`` (no retry loop) with the reason logged."""
    try:
        runtime = await get_runtime_async()
        request = await asyncio.to_thread(admit_run_request, msg.get_body(), runtime)
    except WeftError as exc:
        log.error("runs message %s rejected (%s, field %s): %s", msg.id, exc.code, exc.field, exc.message)
        poison.set(msg.get_body().decode("utf-8", errors="replace"))
        return
    instance_id = run_instance_id(request.idempotency_key, msg.id)
    existing = await client.get_status(instance_id, show_input=False)
    if existing.runtime_status is not None:
        log.info("runs message %s: run %s already exists; not starting it again", msg.id, instance_id)
        return
    await client.start_new(RUN_ORCHESTRATOR, instance_id, request.model_dump(mode="json"))
