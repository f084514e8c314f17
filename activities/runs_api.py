"""HTTP API for runs: start (idempotent), status, list, cancel."""

from __future__ import annotations

import asyncio

import azure.durable_functions as df
import azure.functions as func

from activities.http_json import error, error_response, json_response
from shared.errors import WeftError
from shared.runs.admission import (
    RUN_ORCHESTRATOR,
    RUN_STATUSES,
    admit_run_request,
    durable_statuses_for,
    parse_approval,
    run_instance_id,
)
from shared.runs.admission import run_view as view_of
from shared.runtime import get_runtime_async

bp = df.Blueprint()
_FINISHED = ("Completed", "Failed", "Terminated", "Canceled")


def _links(req: func.HttpRequest, client: df.DurableOrchestrationClient, instance_id: str) -> dict[str, str]:
    base = req.url.split("/api/")[0]
    links = client.create_http_management_payload(instance_id)
    return {"id": instance_id, "statusUrl": f"{base}/api/runs/{instance_id}",
            "cancelUrl": f"{base}/api/runs/{instance_id}/cancel", **links}


@bp.route(route="runs", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def start_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        runtime = await get_runtime_async()
        request = await asyncio.to_thread(admit_run_request, req.get_body(), runtime)
    except WeftError as exc:
        return error_response(exc)
    instance_id = run_instance_id(req.headers.get("Idempotency-Key") or request.idempotency_key)
    if instance_id is not None:
        existing = await client.get_status(instance_id, show_input=False)
        if existing.runtime_status is not None:
            links = _links(req, client, instance_id)
            return json_response(links, 200, {"Location": links["statusUrl"], "Idempotent-Replayed": "true"})
    instance_id = await client.start_new(RUN_ORCHESTRATOR, instance_id, request.model_dump(mode="json"))
    links = _links(req, client, instance_id)
    return json_response(links, 202, {"Location": links["statusUrl"], "Retry-After": "1"})


@bp.route(route="runs/{id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def get_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    status = await client.get_status(req.route_params["id"], show_input=False)
    if status.runtime_status is None or status.name not in (RUN_ORCHESTRATOR, None):
        return error(404, "run_not_found", f"no run with id {req.route_params['id']!r}", "id")
    view = view_of(status.instance_id, status.runtime_status.value, status.custom_status, status.output,
                   status.created_time, status.last_updated_time)
    return json_response(view, 200 if status.runtime_status.value in _FINISHED else 202)


@bp.route(route="runs", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def list_runs(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    wanted = req.params.get("status")
    if wanted is not None and wanted not in RUN_STATUSES:
        return error(400, "invalid_request", f"status must be one of {', '.join(RUN_STATUSES)}", "status")
    raw_limit = req.params.get("limit", "20")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
        return error(400, "invalid_request", "limit must be an integer from 1 to 100", "limit")
    statuses = [df.OrchestrationRuntimeStatus(s) for s in durable_statuses_for(wanted)] if wanted else None
    found = await client.get_status_by(runtime_status=statuses) if statuses else await client.get_status_all()
    runs = [s for s in found if s.name == RUN_ORCHESTRATOR]
    runs.sort(key=lambda s: s.created_time or 0, reverse=True)
    views = [view_of(s.instance_id, s.runtime_status.value if s.runtime_status else None, s.custom_status,
                     s.output, s.created_time, s.last_updated_time) for s in runs]
    if wanted:
        views = [v for v in views if v["status"] == wanted]
    for view in views:
        view.pop("result")
    return json_response({"runs": views[: int(raw_limit)]})


@bp.route(route="runs/{id}/cancel", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def cancel_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    instance_id = req.route_params["id"]
    status = await client.get_status(instance_id, show_input=False)
    if status.runtime_status is None or status.name != RUN_ORCHESTRATOR:
        return error(404, "run_not_found", f"no run with id {instance_id!r}", "id")
    if status.runtime_status.value in _FINISHED:
        return error(409, "run_finished", f"run {instance_id!r} has already finished", "id")
    await client.terminate(instance_id, req.params.get("reason") or "canceled by the caller")
    return json_response({"id": instance_id, "status": "canceling"}, 202)


@bp.route(route="runs/{id}/approve", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def approve_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Body ``{"approved": true|false, "reason": "..."}``: resumes a run waiting for approval of a tool."""
    instance_id = req.route_params["id"]
    try:
        decision = parse_approval(req.get_body())
    except WeftError as exc:
        return error_response(exc)
    status = await client.get_status(instance_id, show_input=False)
    if status.runtime_status is None or status.name != RUN_ORCHESTRATOR:
        return error(404, "run_not_found", f"no run with id {instance_id!r}", "id")
    custom = status.custom_status if isinstance(status.custom_status, dict) else {}
    if status.runtime_status.value in _FINISHED or custom.get("stage") != "awaiting_approval":
        return error(409, "not_awaiting_approval", f"run {instance_id!r} is not waiting for an approval", "id")
    await client.raise_event(instance_id, "approval", decision)
    return json_response({"id": instance_id, "approved": decision["approved"]}, 202)

