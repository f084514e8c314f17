"""What the run triggers need from the core: admitting a request, naming its instance, and presenting a run.

The HTTP, queue and MCP triggers stay a few lines each by calling these; nothing here knows about Azure Functions.
:func:`admit_and_submit` is the one submission path: admit (:func:`admit_run`), then :func:`submit_run` (claim the
run for its caller in the run index — idempotency keys belong to a caller —, take a concurrent-run slot, start the
orchestration). :func:`cancel_run` is the one cancel path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

from shared.errors import (
    Conflict,
    InvalidRequest,
    NotConfigured,
    NotFound,
    OrchestrationFailed,
    RunCanceled,
    UpstreamUnavailable,
)
from shared.identity.caller import Caller, Role
from shared.llm.chat import LLM_NOT_CONFIGURED_MESSAGE
from shared.models import Plan, RunRequest, parse_run_request, validate_request
from shared.payloads import PayloadStore, ref_of_run
from shared.runs.call_journal import journal_for
from shared.runs.code_run import code_tools
from shared.runs.contracts import PreparedPlan
from shared.runs.custom_status import CustomStatus
from shared.runs.names import PREPARED_KEY, Orchestrator, Stage
from shared.runs.plan import validate_plan
from shared.runs.run_index import RunEntry, RunIndex, purged, read_entry
from shared.runtime import Runtime
from shared.sandbox.policy import check_code

__all__ = [
    "FINISHED_DURABLE_STATUSES",
    "RUN_ORCHESTRATOR",
    "RUN_STATUSES",
    "WAIT_UNTIL",
    "DurableStarter",
    "Submitted",
    "admit_and_submit",
    "admit_run",
    "admit_run_request",
    "awaiting_calls",
    "awaiting_instance",
    "cancel_run",
    "check_run_id",
    "finished_runs",
    "owned_run",
    "parse_approval",
    "parse_until",
    "parse_wait",
    "prepared_plan",
    "request_digest",
    "run_instance_id",
    "run_view",
    "step_result",
    "submit_run",
    "watch_status",
]

RUN_ORCHESTRATOR: str = Orchestrator.RUN
FINISHED_DURABLE_STATUSES = ("Completed", "Failed", "Terminated", "Canceled")
RUN_STATUSES = ("pending", "running", "completed", "completed_with_errors", "failed", "canceled")
_KEY_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_APPROVAL_BYTES = 64 * 1024
_START_WAIT_S = 5.0
"""How long a submission that lost the claim of its run waits for the winner to start it."""
_ORPHAN_CLAIM_S = 30.0
"""A claim this old whose run never started was left by a submission that died: the next one starts the run."""
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
LLM_MODES = ("task",)
log = logging.getLogger(__name__)


def prepared_plan(plan: Plan, runtime: Runtime) -> PreparedPlan:
    """What a plan run needs from the runtime, fixed when it starts: the specs of the tools the plan names (unknown
    names are left out; a source registered on another instance is looked for first) and the run settings.
    Blocking."""
    names = {step.tool for step in plan.steps}
    runtime.source_sync.ensure(names)
    specs = {name: runtime.catalog.get(name).spec for name in names if name in runtime.catalog}
    return PreparedPlan(specs=specs, max_fan_out=runtime.settings.max_fan_out,
                        approval_timeout_s=runtime.settings.approval_timeout_s,
                        checkpoint_calls=runtime.settings.plan_checkpoint_calls,
                        window_steps=runtime.settings.plan_window_steps)


def admit_run(body: bytes | str | dict[str, Any], runtime: Runtime) -> tuple[RunRequest, PreparedPlan | None]:
    """:func:`admit_run_request`, and for a plan run its :func:`prepared_plan` (it travels in the orchestrator's
    input, sparing the run a ``prepare_plan`` activity). Blocking."""
    request = admit_run_request(body, runtime)
    prepared = prepared_plan(request.plan, runtime) if request.mode == "plan" and request.plan is not None else None
    return request, prepared


def admit_run_request(body: bytes | str | dict[str, Any], runtime: Runtime) -> RunRequest:
    """Parse and check a run request as far as can be told before starting it; raises :class:`InvalidRequest`
    (HTTP 400, naming the field) or :class:`NotConfigured` (HTTP 503). Blocking: a tool the catalog lacks makes it
    look in the source registry first."""
    if isinstance(body, bytes | str) and not body:
        raise InvalidRequest("the body must be a JSON run request", field="body")
    size = len(body) if isinstance(body, bytes | str) else 0
    limit = runtime.settings.limits.max_plan_bytes + 64 * 1024
    if size > limit:
        raise InvalidRequest(f"the body may be at most {limit} bytes, it is {size}", field="body")
    try:
        request = parse_run_request(body)
    except InvalidRequest as exc:
        exc.field = exc.field or "body"
        raise
    validate_request(request, runtime.settings.limits)
    if request.mode in LLM_MODES and runtime.chat_model is None:
        raise NotConfigured(LLM_NOT_CONFIGURED_MESSAGE, field="mode")
    named = list(request.tools or ()) + ([step.tool for step in request.plan.steps] if request.plan else [])
    runtime.source_sync.ensure(named)  # a source registered on another instance a moment ago
    if request.code is not None:
        code_tools(runtime.catalog, request.tools)
        try:
            check_code(request.code, max_code_bytes=runtime.settings.sandbox.max_code_bytes)
        except SyntaxError as exc:
            raise InvalidRequest(f"the code does not parse: {exc.msg} (line {exc.lineno})", field="code") from None
    if request.plan is not None:
        validate_plan(request.plan, runtime.catalog)
    return request


def parse_approval(body: bytes | str) -> dict[str, Any]:
    """``{"approved": bool, "reason": str, "call_ids": [str] | absent}`` from an approve request (no ``call_ids``:
    every call awaiting approval); raises :class:`InvalidRequest` naming the field."""
    if len(body) > _MAX_APPROVAL_BYTES:
        raise InvalidRequest(f"the body may be at most {_MAX_APPROVAL_BYTES} bytes", field="body")
    try:
        data = json.loads(body or b"null")
    except (ValueError, RecursionError):
        raise InvalidRequest("the body must be JSON: {\"approved\": true|false, \"reason\": \"...\"}",
                             field="body") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object", field="body")
    if not isinstance(data.get("approved"), bool):
        raise InvalidRequest("approved must be true or false", field="approved")
    reason = data.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 2000:
        raise InvalidRequest("reason must be a string of at most 2000 characters", field="reason")
    unknown = sorted(set(data) - {"approved", "reason", "call_ids"})
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0][:60]!r}", field=unknown[0][:60])
    decision: dict[str, Any] = {"approved": data["approved"], "reason": reason}
    if "call_ids" in data:
        ids = data["call_ids"]
        if not (isinstance(ids, list) and 0 < len(ids) <= 1000
                and all(isinstance(i, str) and 0 < len(i) <= 200 for i in ids)):
            raise InvalidRequest("call_ids must be a list of the awaiting calls' ids", field="call_ids")
        decision["call_ids"] = ids
    return decision


def awaiting_calls(custom_status: Any) -> tuple[CustomStatus, str | None]:
    """The custom status of an orchestration and the sub-run it points at (a task executing a plan or code)."""
    custom = CustomStatus()
    if isinstance(custom_status, dict):
        with contextlib.suppress(ValueError):
            custom = CustomStatus.model_validate(custom_status)
    return custom, custom.sub_run


def run_instance_id(idempotency_key: str | None, caller: Caller, fallback: str | None = None) -> str:
    """The orchestration instance id for a request of ``caller``: derived from its idempotency key, so the same key
    of the same caller always names the same run (``run-<key>`` for the keyless local caller, as before identity;
    ``run-<first 40 hex of sha256(caller key, key)>`` for everyone else, so two callers' keys never meet); else
    ``fallback`` (e.g. a queue message id); else a fresh ``run-<uuid>``."""
    if idempotency_key:
        if caller.kind == "local" and _KEY_SAFE.match(idempotency_key):
            return f"run-{idempotency_key}"
        scope = "" if caller.kind == "local" else caller.key + "\0"
        return "run-" + hashlib.sha256((scope + idempotency_key).encode()).hexdigest()[:40]
    if fallback and _RUN_ID.match(fallback):
        return fallback
    return f"run-{uuid.uuid4().hex}"


def check_run_id(run_id: str) -> str:
    """``run_id`` when it can name a run (letters, digits, ``_`` and ``-``, at most 128), else 404: ids reach
    storage and the Durable API as URL parts, so ``.``, ``..``, ``/``, ``#`` or ``?`` never get that far."""
    if not _RUN_ID.match(run_id):
        raise NotFound("no such run", field="id")
    return run_id


def request_digest(request: RunRequest) -> str:
    """SHA-256 of the request as admitted (canonical JSON, idempotency key left out): what a key is bound to."""
    body = request.model_dump_json(exclude={"idempotency_key"})
    return hashlib.sha256(body.encode()).hexdigest()


class DurableStarter(Protocol):
    """What :func:`submit_run` and :func:`cancel_run` need of the Durable client (``DurableOrchestrationClient``
    fits)."""

    async def start_new(self, orchestration_function_name: str, instance_id: str | None = None,
                        client_input: Any | None = None) -> str: ...

    async def get_status(self, instance_id: str, show_history: bool = False, show_history_output: bool = False,
                         show_input: bool = False) -> Any: ...

    async def terminate(self, instance_id: str, reason: str) -> None: ...


@dataclass(frozen=True)
class Submitted:
    """A submitted run: its id, and whether an earlier submission with the same idempotency key started it."""

    run_id: str
    replayed: bool


async def submit_run(
    request: RunRequest,
    caller: Caller,
    client: DurableStarter,
    index: RunIndex,
    *,
    idempotency_key: str | None,
    via: str,
    fallback_id: str | None = None,
    acquire_slot: Callable[[str], Awaitable[None]] | None = None,
    prepared: PreparedPlan | None = None,
) -> Submitted:
    """Start an admitted ``request`` for ``caller`` once (through :func:`admit_and_submit`).

    The run is claimed in ``index`` under its instance id first; of concurrent submissions with one key exactly one
    claim wins and starts the orchestration, the others answer with the same run (``replayed``). The same key with
    another body raises :class:`Conflict`. ``acquire_slot(run_id)`` (the caller's concurrent-run quota, idempotent
    per run id) runs before the claim and may raise ``RateLimited``. ``prepared`` (a plan run's
    :func:`prepared_plan`) goes into the orchestrator's input beside the request.
    """
    caller.require(Role.RUNS_SUBMIT)
    key = idempotency_key or request.idempotency_key
    run_id = run_instance_id(key, caller, fallback_id)
    digest = request_digest(request)
    if acquire_slot is not None:
        await acquire_slot(run_id)
    entry = RunEntry(run_id=run_id, owner=caller.key, owner_name=caller.name, mode=request.mode,
                     created_at=datetime.now(UTC), request_sha256=digest, via=via)
    existing = await asyncio.to_thread(index.claim, entry)
    if existing is not None and (existing.owner != caller.key or existing.request_sha256 != digest):
        raise Conflict("this idempotency key is bound to another request of this caller: send the same body "
                       "again, or use a new key", field="Idempotency-Key")
    if existing is not None:
        # Only the claim's winner starts the run. Durable would start a *new* instance over a finished one with the
        # same id, so a loser never starts it while the winner may still: it waits a moment for the start, and
        # starts the run itself only when the claim is old enough that its winner must have died before starting.
        if await _started(client, run_id, within_s=_START_WAIT_S):
            return Submitted(run_id, replayed=True)
        if datetime.now(UTC) - existing.created_at < timedelta(seconds=_ORPHAN_CLAIM_S):
            return Submitted(run_id, replayed=True)
    try:
        started = request.model_dump(mode="json")
        if prepared is not None:
            started[PREPARED_KEY] = prepared.dump()
        await client.start_new(RUN_ORCHESTRATOR, run_id, started)
    except Exception as exc:  # a concurrent start of the same claimed run; anything else re-raises below
        status = await client.get_status(run_id, show_input=False)
        if status.runtime_status is None:
            raise
        log.info("run %s was started by a concurrent submission (%s)", run_id, type(exc).__name__)
    return Submitted(run_id, replayed=existing is not None)


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


async def watch_status(client: DurableStarter, run_id: str, wait_s: float, poll_s: tuple[float, float],
                       *, until_end: bool = False, index: RunIndex | None = None) -> Any:
    """The run's Durable status, once it differs from now (a new stage, a finished step, the end; with
    ``until_end`` only its end, or its coming to await an approval) or ``wait_s`` passed: long polling, so a client
    follows a run without tight polling. Polls the status store with a backoff from ``poll_s[0]`` to ``poll_s[1]``
    seconds (x1.5 each time); nothing is held while waiting. With ``index``, a run Durable does not know whose entry
    is gone too (:func:`purged`) raises :class:`NotFound` at once."""
    status = await client.get_status(run_id, show_input=False)
    if index is not None and status.runtime_status is None and await purged(index, run_id):
        raise NotFound("no such run", field="id")
    deadline = time.monotonic() + wait_s
    seen = (status.runtime_status, status.custom_status, status.last_updated_time)
    interval, longest = poll_s
    awaiting = until_end and await _awaits_approval(client, run_id, status)
    while time.monotonic() < deadline and not _finished(status):
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
    if sub_run is None or _finished(status):
        return run_id, custom
    sub_status = await client.get_status(sub_run, show_input=False)
    sub_custom, _ = awaiting_calls(sub_status.custom_status)
    return (sub_run, sub_custom) if sub_custom.stage == Stage.AWAITING_APPROVAL else (run_id, custom)


async def _awaits_approval(client: DurableStarter, run_id: str, status: Any) -> bool:
    return (await awaiting_instance(client, run_id, status))[1].stage == Stage.AWAITING_APPROVAL


def _finished(status: Any) -> bool:
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


async def _started(client: DurableStarter, run_id: str, *, within_s: float) -> bool:
    """Whether the run's orchestration exists, waiting up to ``within_s`` for it to appear."""
    deadline = time.monotonic() + within_s
    while True:
        status = await client.get_status(run_id, show_input=False)
        if status.runtime_status is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)


async def owned_run(run_id: str, caller: Caller, index: RunIndex, *, readers: tuple[Role, ...] = ()) -> RunEntry:
    """The index entry of ``run_id`` when ``caller`` may act on it: its owner, or a caller holding one of the
    ``readers`` roles (``Runs.ReadAll``; an approver must see what it approves). Anyone else gets the same
    :class:`NotFound` as for a run that does not exist."""
    check_run_id(run_id)
    entry = await read_entry(index, run_id)
    if entry is None or (entry.owner != caller.key and not any(caller.has_role(role) for role in readers)):
        raise NotFound("no such run", field="id")
    return entry


async def admit_and_submit(body: bytes | str | dict[str, Any], runtime: Runtime, caller: Caller,
                           client: DurableStarter, *, idempotency_key: str | None, via: str,
                           fallback_id: str | None = None) -> tuple[Submitted, str]:
    """Admit ``body`` (:func:`admit_run`, off the event loop) and submit it (:func:`submit_run`) for ``caller``: the
    path of HTTP, queue and MCP submissions. Returns the submission and the run's mode.

    A request that fails admission now but started a run earlier under the same idempotency key (or queue message
    id), with the very same body, is answered with that run: a retry must not turn into an error because a tool
    left the catalog or a model was unconfigured since. (MCP's ``execute`` checks tool names first, itself.)"""
    caller.require(Role.RUNS_SUBMIT)
    try:
        request, prepared = await asyncio.to_thread(admit_run, body, runtime)
    except (InvalidRequest, NotConfigured):
        earlier = await _earlier_run(body, caller, client, runtime.run_index, idempotency_key, fallback_id)
        if earlier is None:
            raise
        return Submitted(earlier.run_id, replayed=True), earlier.mode
    submitted = await submit_run(
        request, caller, client, runtime.run_index, idempotency_key=idempotency_key, via=via,
        fallback_id=fallback_id, acquire_slot=runtime.trust.run_slot_acquirer(caller, partial(finished_runs, client)),
        prepared=prepared)
    return submitted, request.mode


async def _earlier_run(body: bytes | str | dict[str, Any], caller: Caller, client: DurableStarter, index: RunIndex,
                       idempotency_key: str | None, fallback_id: str | None) -> RunEntry | None:
    """The started run an earlier submission of exactly this request made under its key, if any."""

    def parsed() -> tuple[str | None, str] | None:
        try:
            request = parse_run_request(body)
        except InvalidRequest:
            return None
        return request.idempotency_key, request_digest(request)

    found = await asyncio.to_thread(parsed)  # a body may be megabytes: off the event loop, as admission is
    if found is None:
        return None
    key = idempotency_key or found[0]
    if not key and fallback_id is None:
        return None
    entry = await read_entry(index, run_instance_id(key, caller, fallback_id))
    if entry is None or entry.owner != caller.key or entry.request_sha256 != found[1]:
        return None
    status = await client.get_status(entry.run_id, show_input=False)
    return entry if status.runtime_status is not None else None


async def cancel_run(client: DurableStarter, runtime: Runtime, entry: RunEntry, caller: Caller, reason: str, *,
                     field: str = "id") -> None:
    """Cancel ``caller``'s run ``entry`` (checked by :func:`owned_run`): :class:`NotFound` when it is gone,
    :class:`Conflict` when it has not started or has finished. The run is marked canceled in its call journal first,
    because terminating reaches neither its sub-orchestrations (a wide plan's ``run_steps`` slices) nor its queued
    activities, and every side-effecting call checks the mark before its tool runs; then the run and its task's
    current sub-run (Durable does not cascade) are terminated, its slot released and the cancel audited."""
    status = await client.get_status(entry.run_id, show_input=False)
    if status.runtime_status is None:
        if await purged(runtime.run_index, entry.run_id):
            raise NotFound("no such run", field=field)
        raise Conflict("the run has not started yet; cancel it again in a moment", field=field)
    if status.runtime_status.value in FINISHED_DURABLE_STATUSES:
        raise Conflict("the run has already finished", field=field)
    _, sub_run = awaiting_calls(status.custom_status)
    await asyncio.to_thread(journal_for(runtime.payloads).cancel, entry.run_id)
    try:
        await client.terminate(entry.run_id, reason)
        if sub_run is not None:
            sub_status = await client.get_status(sub_run, show_input=False)
            if not _finished(sub_status) and sub_status.runtime_status is not None:
                await client.terminate(sub_run, reason)
    except Exception as exc:  # marked (no side effect of it starts any more) but still running: say so
        await runtime.trust.audit_event("run.cancel", caller, outcome="error", run_id=entry.run_id,
                                        detail=f"marked canceled; terminate failed ({type(exc).__name__})")
        raise UpstreamUnavailable("the run is marked canceled (none of its side-effecting calls starts any more) "
                                  "but could not be terminated; cancel it again", field=field) from None
    await runtime.trust.release_run_slot(entry)
    await runtime.trust.audit_event("run.cancel", caller, run_id=entry.run_id)


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
