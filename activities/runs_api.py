"""HTTP API for runs: start (idempotent per caller), status, list, cancel, approve. Every route has a caller; a run
is visible only to its owner (and to ``Runs.ReadAll``), and anyone else gets the 404 of a run that does not exist."""

from __future__ import annotations

import asyncio
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from activities.http_json import error_response, json_body, json_response
from shared.api_limits import api_limits
from shared.errors import Conflict, InvalidRequest, NotFound, WeftError, quoted
from shared.identity.audit import AuditAction
from shared.identity.caller import Role
from shared.runs.admission import admit_and_submit, owned_run, parse_approval, run_body_limit
from shared.runs.admission import cancel_run as cancel
from shared.runs.names import APPROVAL_EVENT, Stage
from shared.runs.run_status import (
    RUN_STATUSES,
    awaiting_instance,
    known_status,
    parse_until,
    parse_wait,
    step_result,
    watch_status,
)
from shared.runs.run_status import run_view as view_of
from shared.runtime import get_runtime_async

bp = df.Blueprint()
_READERS = (Role.RUNS_READ_ALL, Role.RUNS_APPROVE)
"""Who may read (and, with Runs.Approve, decide on) other callers' runs."""


def _links(req: func.HttpRequest, instance_id: str) -> dict[str, str]:
    """Where the caller follows and cancels the run: Weft's own routes, which check the caller. Never the Durable
    management URLs: they carry the task hub's system key, which opens every instance to whoever holds it (start
    any input, raise an approval event, terminate or purge anyone's run)."""
    base = req.url.split("/api/")[0]
    return {"id": instance_id, "statusUrl": f"{base}/api/runs/{instance_id}",
            "cancelUrl": f"{base}/api/runs/{instance_id}/cancel"}


@bp.route(route="runs", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def start_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        runtime = await get_runtime_async()
        caller = await runtime.trust.caller_of(req.headers)
        body = json_body(req, run_body_limit(runtime))
        submitted, mode = await admit_and_submit(body, runtime, caller, client,
                                                 idempotency_key=req.headers.get("Idempotency-Key"), via="http")
    except WeftError as exc:
        return error_response(exc)
    links = _links(req, submitted.run_id)
    if submitted.replayed:
        return json_response(links, 200, {"Location": links["statusUrl"], "Idempotent-Replayed": "true"})
    await runtime.trust.audit_event("run.submit", caller, run_id=submitted.run_id, detail=mode)
    return json_response(links, 202, {"Location": links["statusUrl"], "Retry-After": "1"})


@bp.route(route="runs/{id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def get_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """The run: status, stage, progress, the steps so far, what awaits approval, the result when finished.
    ``?wait=N`` (seconds, at most WEFT_RUN_WAIT_MAX_S) answers as soon as the run changes or ends, else after N;
    with ``&until=end`` only once it ends or awaits an approval."""
    try:
        runtime = await get_runtime_async()
        caller = await runtime.trust.caller_of(req.headers)
        entry = await owned_run(req.route_params["id"], caller, runtime.run_index, readers=_READERS)
        wait_s = parse_wait(req.params.get("wait"), runtime.settings.run_wait_max_s)
        until_end = parse_until(req.params.get("until"))
        if entry.owner != caller.key and not caller.has_role(Role.RUNS_READ_ALL):
            wait_s = 0.0  # an approver sees another's run only while it awaits a decision: no long poll to time it
        status = await watch_status(client, entry.run_id, wait_s, runtime.settings.run_wait_poll_s,
                                    until_end=until_end, index=runtime.run_index)
    except WeftError as exc:
        return error_response(exc)
    view = _view(entry.run_id, status)
    view["owner"] = entry.owner_name
    target, custom = await awaiting_instance(client, entry.run_id, status)
    if (entry.owner != caller.key and not caller.has_role(Role.RUNS_READ_ALL)
            and custom.stage != Stage.AWAITING_APPROVAL):  # an approver sees a run while it awaits a decision
        return error_response(NotFound("no such run", field="id"))
    if target != entry.run_id and custom.awaiting:  # a task's sub-run waits for approval: show it on the task
        view["stage"] = str(custom.stage)
        view["awaiting_approval"] = {"calls": [p.model_dump(mode="json") for p in custom.awaiting],
                                     "expires_at": custom.expires_at, "sub_run": target,
                                     **({"more": custom.awaiting_more} if custom.awaiting_more else {})}
    return json_response(view, 200 if view["status"] not in ("pending", "running") else 202)


@bp.route(route="runs/{id}/steps/{step_id}/result", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def get_step_result(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """The whole result of one step of a finished run, also when the run's record keeps only a reference and a
    preview (results larger than WEFT_PAYLOAD_INLINE_MAX_BYTES live in payload storage)."""
    try:
        runtime = await get_runtime_async()
        caller = await runtime.trust.caller_of(req.headers)
        entry = await owned_run(req.route_params["id"], caller, runtime.run_index, readers=(Role.RUNS_READ_ALL,))
        status = await known_status(client, runtime.run_index, entry.run_id)
        body = await asyncio.to_thread(step_result, status.output, entry.run_id, req.route_params["step_id"],
                                       runtime.payloads)
    except WeftError as exc:
        return error_response(exc)
    return func.HttpResponse(body, status_code=200, mimetype="application/json")


@bp.route(route="runs", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def list_runs(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """This caller's runs newest first (everyone's with ``Runs.ReadAll`` and ``?all=true``), one page of ``limit``
    with a ``continuation`` token; ``status`` filters the page."""
    try:
        runtime = await get_runtime_async()
        caller = await runtime.trust.caller_of(req.headers)
        wanted, limit, everyone = _list_params(req)
        if everyone:
            caller.require(Role.RUNS_READ_ALL)
        entries, token = await asyncio.to_thread(runtime.run_index.page, None if everyone else caller.key, limit,
                                                 req.params.get("continuation") or None)
    except WeftError as exc:
        return error_response(exc)
    statuses = await asyncio.gather(*(client.get_status(e.run_id, show_input=False) for e in entries))
    views = []
    for entry, status in zip(entries, statuses, strict=True):
        view = _view(entry.run_id, status)
        view.pop("result")
        view["mode"] = entry.mode
        if wanted is None or view["status"] == wanted:
            views.append(view)
    return json_response({"runs": views, "continuation": token})


def _list_params(req: func.HttpRequest) -> tuple[str | None, int, bool]:
    wanted = req.params.get("status")
    if wanted is not None and wanted not in RUN_STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(RUN_STATUSES)}", field="status")
    raw_limit = req.params.get("limit", "20")
    if not (raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 3 and 1 <= int(raw_limit) <= 100):
        raise InvalidRequest("limit must be an integer from 1 to 100", field="limit")
    everyone = req.params.get("all", "false")
    if everyone not in ("true", "false"):
        raise InvalidRequest("all must be true or false", field="all")
    return wanted, int(raw_limit), everyone == "true"


@bp.route(route="runs/{id}/cancel", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def cancel_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Terminate the run (and its task's current sub-run); no side-effecting tool call of it starts afterwards
    (:func:`~shared.runs.admission.cancel_run`)."""
    try:
        runtime = await get_runtime_async()
        caller = await runtime.trust.caller_of(req.headers)
        entry = await owned_run(req.route_params["id"], caller, runtime.run_index)
        await cancel(client, runtime, entry, caller, (req.params.get("reason") or "canceled by the caller")[:500])
    except WeftError as exc:
        return error_response(exc)
    return json_response({"id": entry.run_id, "status": "canceling"}, 202)


@bp.route(route="runs/{id}/approve", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def approve_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Body ``{"approved": true|false, "reason": "...", "call_ids": [...]}``: decides the tool calls awaiting approval
    (those named, else all of them) — of the run, or of the sub-run its task is executing. Only ``Runs.Approve``
    callers decide, and (WEFT_APPROVAL_SEPARATION, default on) never on their own runs; each decision is audited."""
    try:
        runtime = await get_runtime_async()
        caller = await runtime.trust.caller_of(req.headers)
        decision = parse_approval(json_body(req, api_limits().max_json_body_bytes))
        caller.require(Role.RUNS_APPROVE)
        entry = await owned_run(req.route_params["id"], caller, runtime.run_index, readers=_READERS)
        runtime.trust.check_separation_of_duties(caller, entry)
        status = await known_status(client, runtime.run_index, entry.run_id)
        target, custom = await awaiting_instance(client, entry.run_id, status)
        if custom.stage != Stage.AWAITING_APPROVAL or not custom.awaiting:
            raise Conflict("the run is not waiting for an approval", field="id")
        waiting = {pending.call_id: pending for pending in custom.awaiting}
        unknown = [call_id for call_id in decision.get("call_ids") or () if call_id not in waiting]
        if unknown:
            raise Conflict(f"call {quoted(unknown[0])} is not waiting for an approval; waiting: "
                           f"{', '.join(sorted(waiting))[:500]}", field="call_ids")
    except WeftError as exc:
        return error_response(exc)
    # The event names exactly the calls the approver was shown, with their argument hashes: a decision never applies
    # to a call that came to wait after it (a repeated click, a second approver, a later step).
    decided = decision.get("call_ids") or sorted(waiting)
    await client.raise_event(target, APPROVAL_EVENT, {
        "approved": decision["approved"], "reason": decision["reason"], "by": caller.name, "call_ids": decided,
        "args_sha256": {call_id: waiting[call_id].args_sha256 for call_id in decided}})
    action: AuditAction = "run.approve" if decision["approved"] else "run.deny"
    for call_id in decided:
        await runtime.trust.audit_event(action, caller, run_id=entry.run_id, step_id=call_id,
                                        tool=waiting[call_id].tool, args_sha256=waiting[call_id].args_sha256,
                                        detail="" if target == entry.run_id else f"sub-run {target}")
    return json_response({"id": entry.run_id, "approved": decision["approved"], "call_ids": decided}, 202)


def _view(run_id: str, status: Any) -> dict[str, Any]:
    runtime_status = status.runtime_status.value if status.runtime_status is not None else None
    return view_of(run_id, runtime_status, status.custom_status, status.output, status.created_time,
                   status.last_updated_time)

