"""What the run triggers need from the core to act on runs: admitting a request, naming its instance, starting,
owning and canceling it (presenting and following a run is :mod:`shared.runs.run_status`).

The HTTP, queue and MCP triggers stay a few lines each by calling these; nothing here knows about Azure Functions.
:func:`admit_and_submit` is the one submission path: check the idempotency key, answer a retry with its run, else
admit the request (check it and, for a plan, :func:`prepared_plan`), then :func:`submit_run` (claim the run for its
caller in the run index — idempotency keys belong to a caller —, take a concurrent-run slot, start the
orchestration). :func:`cancel_run` is the one cancel path.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from shared.errors import (
    QUOTED_CHARS,
    Conflict,
    InvalidRequest,
    NotConfigured,
    NotFound,
    UpstreamUnavailable,
    quoted,
)
from shared.identity.caller import Caller, Role
from shared.llm.chat import LLM_NOT_CONFIGURED_MESSAGE
from shared.models import IDEMPOTENCY_KEY_PATTERN, Plan, RunRequest, parse_json, parse_run_request, validate_request
from shared.runs.approval import MAX_APPROVAL_CALL_IDS, MAX_CALL_ID_CHARS
from shared.runs.call_journal import journal_for
from shared.runs.code_run import code_tools
from shared.runs.contracts import PreparedPlan
from shared.runs.names import PREPARED_KEY, Orchestrator
from shared.runs.plan import validate_plan
from shared.runs.run_index import RunEntry, RunIndex, read_entry
from shared.runs.run_status import DurableStarter, awaiting_calls, finished, finished_runs, known_status
from shared.runtime import Runtime
from shared.sandbox.policy import check_code

__all__ = [
    "RUN_ORCHESTRATOR",
    "Submitted",
    "admit_and_submit",
    "cancel_run",
    "check_run_id",
    "owned_run",
    "parse_approval",
    "prepared_plan",
    "request_digest",
    "run_body_limit",
    "run_instance_id",
    "started_request",
    "submit_run",
]

RUN_ORCHESTRATOR: str = Orchestrator.RUN
_KEY_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
_KEY_RULE = "1 to 100 letters, digits or _ . : @ - (ASCII)"
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
                        window_steps=runtime.settings.plan_window_steps, finish_plan=True)


def _admit_parsed(request: RunRequest, runtime: Runtime) -> tuple[RunRequest, PreparedPlan | None]:
    """Check a parsed run request as far as can be told before starting it (:class:`InvalidRequest` naming the field,
    or :class:`NotConfigured`), and for a plan run its :func:`prepared_plan` (it travels in the orchestrator's input,
    sparing the run a ``prepare_plan`` activity). Blocking: a tool the catalog lacks makes it look in the source
    registry first."""
    _check_request(request, runtime)
    prepared = prepared_plan(request.plan, runtime) if request.mode == "plan" and request.plan is not None else None
    return request, prepared


def _parse_body(body: bytes | str | dict[str, Any], runtime: Runtime) -> RunRequest:
    if isinstance(body, bytes | str) and not body:
        raise InvalidRequest("the body must be a JSON run request", field="body")
    size, limit = _body_size(body), run_body_limit(runtime)
    if size > limit:
        raise InvalidRequest(f"the body may be at most {limit} bytes, it is {size}", field="body")
    try:
        request = parse_run_request(body)
    except InvalidRequest as exc:
        exc.field = exc.field or "body"
        raise
    return request


def _check_request(request: RunRequest, runtime: Runtime) -> None:
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


def parse_approval(body: bytes | str) -> dict[str, Any]:
    """``{"approved": bool, "reason": str, "call_ids": [str] | absent}`` from an approve request (no ``call_ids``:
    every call awaiting approval; a call named twice is decided once); raises :class:`InvalidRequest` naming the
    field."""
    if len(body) > _MAX_APPROVAL_BYTES:
        raise InvalidRequest(f"the body may be at most {_MAX_APPROVAL_BYTES} bytes", field="body")
    data = parse_json(body or b"null", message="the body must be JSON: {\"approved\": true|false, \"reason\": \"...\"}")
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object", field="body")
    if not isinstance(data.get("approved"), bool):
        raise InvalidRequest("approved must be true or false", field="approved")
    reason = data.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 2000:
        raise InvalidRequest("reason must be a string of at most 2000 characters", field="reason")
    unknown = sorted(set(data) - {"approved", "reason", "call_ids"})
    if unknown:
        raise InvalidRequest(f"unknown field {quoted(unknown[0])}", field=unknown[0][:QUOTED_CHARS])
    decision: dict[str, Any] = {"approved": data["approved"], "reason": reason}
    if "call_ids" in data:
        ids = data["call_ids"]
        if not (isinstance(ids, list) and 0 < len(ids) <= MAX_APPROVAL_CALL_IDS
                and all(isinstance(i, str) and 0 < len(i) <= MAX_CALL_ID_CHARS for i in ids)):
            raise InvalidRequest(f"call_ids must be a list of 1 to {MAX_APPROVAL_CALL_IDS} of the awaiting calls' ids",
                                 field="call_ids")
        decision["call_ids"] = list(dict.fromkeys(ids))
    return decision


def run_instance_id(idempotency_key: str | None, caller: Caller, fallback: str | None = None) -> str:
    """The orchestration instance id for a request of ``caller``: derived from its idempotency key, so the same key
    of the same caller always names the same run (``run-<key>`` for the keyless local caller, as before identity;
    ``run-<first 40 hex of sha256(caller key, key)>`` for everyone else, so two callers' keys never meet); else
    ``fallback`` (e.g. a queue message id); else a fresh ``run-<uuid>``."""
    if idempotency_key:
        if caller.kind == "local" and _KEY_SAFE.fullmatch(idempotency_key):
            return f"run-{idempotency_key}"
        scope = "" if caller.kind == "local" else caller.key + "\0"
        return "run-" + hashlib.sha256((scope + idempotency_key).encode()).hexdigest()[:40]
    if fallback and _RUN_ID.fullmatch(fallback):
        return fallback
    return f"run-{uuid.uuid4().hex}"


def check_run_id(run_id: str) -> str:
    """``run_id`` when it can name a run (letters, digits, ``_`` and ``-``, at most 128), else 404: ids reach
    storage and the Durable API as URL parts, so ``.``, ``..``, ``/``, ``#`` or ``?`` never get that far."""
    if not _RUN_ID.fullmatch(run_id):
        raise NotFound("no such run", field="id")
    return run_id


def request_digest(request: RunRequest) -> str:
    """SHA-256 of the request as admitted (canonical JSON, idempotency key left out): what a key is bound to."""
    body = request.model_dump_json(exclude={"idempotency_key"})
    return hashlib.sha256(body.encode()).hexdigest()


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
    """Admit ``body`` (off the event loop) and submit it (:func:`submit_run`) for ``caller``: the path of HTTP, queue
    and MCP submissions. Returns the submission and the run's mode. ``idempotency_key`` (the HTTP header) must match
    the body's key's pattern and, when the body has a key too, be the same key (:class:`InvalidRequest` naming
    ``Idempotency-Key``).

    A retry (the very same body under the idempotency key or queue message id of a run that started) is answered
    with its run once the body is parsed, before the rest of admission: it is not checked, prepared or given a
    concurrent-run slot again, so it does not turn into an error because a tool left the catalog, a model was
    unconfigured or the caller's other runs took every slot since. (MCP's ``execute`` resolves the tool names of
    such a retry with :func:`started_request` first.)"""
    caller.require(Role.RUNS_SUBMIT)
    if idempotency_key is not None and not _KEY.fullmatch(idempotency_key):
        raise InvalidRequest(f"the Idempotency-Key header must be {_KEY_RULE}", field="Idempotency-Key")
    parsed = await asyncio.to_thread(_parse_body, body, runtime)
    if idempotency_key is not None and parsed.idempotency_key not in (None, idempotency_key):
        raise InvalidRequest("the Idempotency-Key header and the body's idempotency_key differ: send one key, or the "
                             "same key in both", field="Idempotency-Key")
    earlier = await _earlier_run(parsed, caller, client, runtime.run_index, idempotency_key, fallback_id)
    if earlier is not None:
        return Submitted(earlier.run_id, replayed=True), earlier.mode
    request, prepared = await asyncio.to_thread(_admit_parsed, parsed, runtime)
    submitted = await submit_run(
        request, caller, client, runtime.run_index, idempotency_key=idempotency_key, via=via,
        fallback_id=fallback_id, acquire_slot=runtime.trust.run_slot_acquirer(caller, partial(finished_runs, client)),
        prepared=prepared)
    return submitted, request.mode


def _body_size(body: bytes | str | dict[str, Any]) -> int:
    return len(body) if isinstance(body, bytes | str) else 0


def run_body_limit(runtime: Runtime) -> int:
    """The largest run request body admitted: the plan's limit and room for the rest of the request."""
    return runtime.settings.limits.max_plan_bytes + 64 * 1024


async def _earlier_run(request: RunRequest, caller: Caller, client: DurableStarter, index: RunIndex,
                       idempotency_key: str | None, fallback_id: str | None) -> RunEntry | None:
    """The started run an earlier submission of exactly this request made under its key, if any."""
    key = idempotency_key or request.idempotency_key
    if not key and fallback_id is None:
        return None
    entry = await read_entry(index, run_instance_id(key, caller, fallback_id))
    if entry is None or entry.owner != caller.key:
        return None
    if entry.request_sha256 != await asyncio.to_thread(request_digest, request):  # a request may be megabytes
        return None
    status = await client.get_status(entry.run_id, show_input=False)
    return entry if status.runtime_status is not None else None


async def started_request(idempotency_key: str, caller: Caller, client: DurableStarter, index: RunIndex
                          ) -> dict[str, Any] | None:
    """The request as admitted (the orchestrator's input) of the run that ``caller`` started under
    ``idempotency_key``, if one started; for a retry whose tool names only that request still resolves."""
    entry = await read_entry(index, run_instance_id(idempotency_key, caller))
    if entry is None or entry.owner != caller.key:
        return None
    status = await client.get_status(entry.run_id, show_input=True)
    started = status.input_ if status.runtime_status is not None else None
    return started if isinstance(started, dict) else None


async def cancel_run(client: DurableStarter, runtime: Runtime, entry: RunEntry, caller: Caller, reason: str, *,
                     field: str = "id") -> None:
    """Cancel ``caller``'s run ``entry`` (checked by :func:`owned_run`): :class:`NotFound` when it is gone,
    :class:`Conflict` when it has not started or has finished. The run is marked canceled in its call journal first,
    because terminating reaches neither its sub-orchestrations (a wide plan's ``run_steps`` slices) nor its queued
    activities, and every side-effecting call checks the mark before its tool runs; then the run and its task's
    current sub-run (Durable does not cascade) are terminated, its slot released and the cancel audited."""
    status = await known_status(client, runtime.run_index, entry.run_id, field=field)
    if status.runtime_status is None:
        raise Conflict("the run has not started yet; cancel it again in a moment", field=field)
    if finished(status):
        raise Conflict("the run has already finished", field=field)
    _, sub_run = awaiting_calls(status.custom_status)
    try:
        await asyncio.to_thread(journal_for(runtime.payloads).cancel, entry.run_id)
    except Exception as exc:  # nothing was stopped: say so (the storage error's text names accounts, not shown)
        await runtime.trust.audit_event("run.cancel", caller, outcome="error", run_id=entry.run_id,
                                        detail=f"not marked canceled ({type(exc).__name__})")
        raise UpstreamUnavailable("the run could not be marked canceled, so nothing was stopped; cancel it again",
                                  field=field) from None
    try:
        await client.terminate(entry.run_id, reason)
        if sub_run is not None:
            sub_status = await client.get_status(sub_run, show_input=False)
            if not finished(sub_status) and sub_status.runtime_status is not None:
                await client.terminate(sub_run, reason)
    except Exception as exc:  # marked (no side effect of it starts any more) but still running: say so
        await runtime.trust.audit_event("run.cancel", caller, outcome="error", run_id=entry.run_id,
                                        detail=f"marked canceled; terminate failed ({type(exc).__name__})")
        raise UpstreamUnavailable("the run is marked canceled (none of its side-effecting calls starts any more) "
                                  "but could not be terminated; cancel it again", field=field) from None
    await runtime.trust.release_run_slot(entry)
    await runtime.trust.audit_event("run.cancel", caller, run_id=entry.run_id)
