"""Queue entry point: one run request per message on the ``runs`` queue."""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from shared.errors import RateLimited, WeftError
from shared.runs.admission import admit_and_submit
from shared.runtime import get_runtime_async

bp = df.Blueprint()
log = logging.getLogger(__name__)


@bp.queue_trigger(arg_name="msg", queue_name="runs", connection="AzureWebJobsStorage")
@bp.queue_output(arg_name="poison", queue_name="runs-poison", connection="AzureWebJobsStorage")
@bp.durable_client_input(client_name="client")
async def run_from_queue(msg: func.QueueMessage, poison: func.Out[str], client: df.DurableOrchestrationClient) -> None:
    """The run belongs to the queue's service caller (WEFT_QUEUE_CALLER): only identities with a data role on the
    storage account can enqueue. Instance id = the message's idempotency key, else its message id: a redelivered
    message never starts a second run. A malformed message goes straight to ``runs-poison`` (no retry loop) with
    the reason logged; a spent concurrent-run quota raises, so the host redelivers the message later."""
    runtime = await get_runtime_async()
    caller = runtime.trust.queue_caller
    try:
        submitted, mode = await admit_and_submit(msg.get_body(), runtime, caller, client, idempotency_key=None,
                                                 via="queue", fallback_id=msg.id)
    except RateLimited:
        raise
    except WeftError as exc:
        # the message can quote the request's values (a tool argument): the code and the field say what was wrong
        log.error("runs message %s rejected (%s, field %s)", msg.id, exc.code, exc.field)
        poison.set(msg.get_body().decode("utf-8", errors="replace"))
        return
    if submitted.replayed:
        log.info("runs message %s: run %s already exists; not starting it again", msg.id, submitted.run_id)
        return
    await runtime.trust.audit_event("run.submit", caller, run_id=submitted.run_id, detail=mode)
