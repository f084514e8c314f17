"""Presenting and following a run: its Durable status as callers see it (``run_view``), the long poll that follows it
(``watch_status``), what awaits approval, a finished step's whole result. Read-only: admitting, starting and
canceling runs are :mod:`shared.runs.admission`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import datetime
from typing import Any, Protocol

from shared.errors import InvalidRequest, NotFound, OrchestrationFailed, RunCanceled
from shared.payloads import PayloadStore, ref_of_run
from shared.runs.custom_status import CustomStatus
from shared.runs.names import Stage
from shared.runs.run_index import RunIndex, purged

__all__ = [
    "FINISHED_DURABLE_STATUSES",
    "RUN_STATUSES",
    "WAIT_UNTIL",
    "DurableStarter",
    "awaiting_calls",
    "awaiting_instance",
    "finished",
    "finished_runs",
    "known_status",
    "parse_until",
    "parse_wait",
    "run_view",
    "step_result",
    "watch_status",
]

FINISHED_DURABLE_STATUSES = ("Completed", "Failed", "Terminated", "Canceled")
RUN_STATUSES = ("pending", "running", "completed", "completed_with_errors", "failed", "canceled")

def awaiting_calls(custom_status: Any) -> tuple[CustomStatus, str | None]:
    """The custom status of an orchestration and the sub-run it points at (a task executing a plan or code)."""
    custom = CustomStatus()
    if isinstance(custom_status, dict):
        with contextlib.suppress(ValueError):
            custom = CustomStatus.model_validate(custom_status)
    return custom, custom.sub_run



class DurableStarter(Protocol):
    """What :func:`submit_run` and :func:`cancel_run` need of the Durable client (``DurableOrchestrationClient``
    fits)."""

    async def start_new(self, orchestration_function_name: str, instance_id: str | None = None,
                        client_input: Any | None = None) -> str: ...

    async def get_status(self, instance_id: str, show_history: bool = False, show_history_output: bool = False,
                         show_input: bool = False) -> Any: ...

    async def terminate(self, instance_id: str, reason: str) -> None: ...



def parse_wait(raw: str | None, max_s: float) -> float:
    """``?wait=`` seconds (0 when absent), at most ``max_s``; :class:`InvalidRequest` names a bad value."""
    if raw is None:
        return 0.0
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4):
        raise InvalidRequest(f"wait must be a whole number of seconds from 0 to {max_s:g}", field="wait")
    return min(float(raw), max_s)


WAIT_UNTIL = ("change", "end")
"""What ``?until=`` a long poll waits for: any change of the run (the default), or its end."""


def parse_until(raw: str | None) -> bool:
    """Whether ``?until=`` asks to wait for the run's end (``end``) rather than any change (``change``, absent)."""
    if raw is None or raw == "change":
        return False
    if raw == "end":
        return True
    raise InvalidRequest("until must be 'change' (answer when the run changes) or 'end' (when it ends or comes "
                         "to await an approval)", field="until")


async def known_status(client: DurableStarter, index: RunIndex, run_id: str, *, field: str = "id") -> Any:
    """The run's Durable status, read right after its index entry: :class:`NotFound` when Durable does not know the
    run and its entry is gone too (the entry came from a cache after another instance's retention purge:
    :func:`~shared.runs.run_index.purged`). A run admitted but not started yet comes back with no runtime status."""
    status = await client.get_status(run_id, show_input=False)
    if status.runtime_status is None and await purged(index, run_id):
        raise NotFound("no such run", field=field)
    return status


async def watch_status(client: DurableStarter, run_id: str, wait_s: float, poll_s: tuple[float, float],
                       *, until_end: bool = False, index: RunIndex | None = None) -> Any:
    """The run's Durable status, once it differs from now (a new stage, a finished step, the end; with
    ``until_end`` only its end, or its coming to await an approval) or ``wait_s`` passed: long polling, so a client
    follows a run without tight polling. Polls the status store with a backoff from ``poll_s[0]`` to ``poll_s[1]``
    seconds (x1.5 each time); nothing is held while waiting. With ``index``, a run Durable does not know whose entry
    is gone too raises :class:`NotFound` at once (:func:`known_status`)."""
    status = await (known_status(client, index, run_id) if index is not None
                    else client.get_status(run_id, show_input=False))
    deadline = time.monotonic() + wait_s
    seen = (status.runtime_status, status.custom_status, status.last_updated_time)
    interval, longest = poll_s
    awaiting = until_end and await _awaits_approval(client, run_id, status)
    while time.monotonic() < deadline and not finished(status):
        await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(longest, interval * 1.5)
        status = await client.get_status(run_id, show_input=False)
        if until_end:
            was_awaiting, awaiting = awaiting, await _awaits_approval(client, run_id, status)
            if awaiting and not was_awaiting:  # it came to wait for someone (a run already waiting is no news)
                break
        elif (status.runtime_status, status.custom_status, status.last_updated_time) != seen:
            break
    return status


async def awaiting_instance(client: DurableStarter, run_id: str, status: Any) -> tuple[str, CustomStatus]:
    """The instance whose approvals are pending, and its custom status: the run itself, or the sub-run its task is
    executing when that one waits for an approval."""
    custom, sub_run = awaiting_calls(status.custom_status)
    if sub_run is None or finished(status):
        return run_id, custom
    sub_status = await client.get_status(sub_run, show_input=False)
    sub_custom, _ = awaiting_calls(sub_status.custom_status)
    return (sub_run, sub_custom) if sub_custom.stage == Stage.AWAITING_APPROVAL else (run_id, custom)


async def _awaits_approval(client: DurableStarter, run_id: str, status: Any) -> bool:
    return (await awaiting_instance(client, run_id, status))[1].stage == Stage.AWAITING_APPROVAL


def finished(status: Any) -> bool:
    """Whether a Durable status is a run's end (completed, failed, terminated, canceled)."""
    return status.runtime_status is not None and status.runtime_status.value in FINISHED_DURABLE_STATUSES


def step_result(output: Any, run_id: str, step_id: str, payloads: PayloadStore) -> bytes:
    """The whole result of ``step_id`` in a finished run's ``output``, as JSON bytes: read back from payload storage
    when the record keeps only its reference. :class:`NotFound` for an unknown step or a run not finished."""
    if not isinstance(output, dict) or not isinstance(output.get("steps"), list):
        raise NotFound("the run has not finished: step results are kept with the finished run", field="step_id")
    record = next((s for s in output["steps"] if isinstance(s, dict) and s.get("step_id") == step_id), None)
    if record is None:
        raise NotFound("no such step in this run", field="step_id")
    value = record.get("result")
    if isinstance(value, dict) and set(value) == {"blob_ref", "size_bytes", "preview"}:
        ref = value["blob_ref"]
        if not isinstance(ref, str) or not ref_of_run(ref, run_id):
            raise NotFound("the step's result is not stored for this run", field="step_id")
        from azure.core.exceptions import ResourceNotFoundError

        try:
            stored = payloads.get(ref)
        except (OSError, ValueError, ResourceNotFoundError) as exc:
            raise NotFound("the step's stored result is gone (past retention?)", field="step_id") from exc
        return json.dumps(stored, separators=(",", ":")).encode()
    return json.dumps(value, separators=(",", ":")).encode()



async def finished_runs(client: DurableStarter, run_ids: list[str]) -> set[str]:
    """Which of ``run_ids`` are over (completed, failed, canceled) or unknown to Durable."""
    statuses = await asyncio.gather(*(client.get_status(run_id, show_input=False) for run_id in run_ids))
    return {run_id for run_id, status in zip(run_ids, statuses, strict=True)
            if status.runtime_status is None or status.runtime_status.value in FINISHED_DURABLE_STATUSES}



def run_view(
    instance_id: str,
    runtime_status: str | None,
    custom_status: Any,
    output: Any,
    created: datetime | None,
    updated: datetime | None,
) -> dict[str, Any]:
    """A run as callers see it: ``{id, status, stage, progress, result, errors, created_at, updated_at}``."""
    view: dict[str, Any] = {
        "id": instance_id,
        "status": "pending",
        "stage": None,
        "progress": None,
        "result": None,
        "errors": [],
        "created_at": created.isoformat() if created else None,
        "updated_at": updated.isoformat() if updated else None,
    }
    custom = CustomStatus()
    if isinstance(custom_status, dict):
        with contextlib.suppress(ValueError):  # a status this version cannot read shows no stage or progress
            custom = CustomStatus.model_validate(custom_status)
    view["stage"] = None if custom.stage is None else str(custom.stage)
    view["progress"] = custom.progress
    if custom.steps is not None and runtime_status not in ("Completed",):
        view["steps"] = [step.model_dump(mode="json", exclude_none=True) for step in custom.steps]
    if custom.awaiting:
        view["awaiting_approval"] = {"calls": [p.model_dump(mode="json") for p in custom.awaiting],
                                     "expires_at": custom.expires_at,
                                     **({"more": custom.awaiting_more} if custom.awaiting_more else {})}
    if runtime_status in ("Pending", None):
        view["status"] = "pending"
    elif runtime_status in ("Running", "Suspended", "ContinuedAsNew"):
        view["status"] = "running"
    elif runtime_status == "Completed" and isinstance(output, dict):
        view["status"] = output.get("status", "completed")
        view["result"] = output
        view["errors"] = output.get("errors", [])
    elif runtime_status == "Terminated":
        view["status"] = "canceled"
        view["stage"] = "canceled"
        view["errors"] = [{"code": RunCanceled.code, "message": str(output or "canceled"), "field": None}]
    else:
        view["status"] = "failed"
        view["errors"] = [{"code": OrchestrationFailed.code, "message": str(output), "field": None}]
    return view
