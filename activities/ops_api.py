"""Operations endpoints: liveness, readiness (each dependency with status and latency), Prometheus metrics."""

from __future__ import annotations

import asyncio

import azure.durable_functions as df
import azure.functions as func

from activities.http_json import error_response, json_response
from shared.errors import WeftError
from shared.health import liveness, readiness_body, run_checks
from shared.identity.audit import parse_audit_query
from shared.identity.caller import Role
from shared.runtime import get_runtime, get_runtime_async

bp = df.Blueprint()
VERSION = "0.1.0"


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Cheap liveness: the worker answers; no dependency is called."""
    return json_response(liveness(VERSION))


@bp.route(route="ready", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def ready(req: func.HttpRequest) -> func.HttpResponse:
    """Readiness: 200 when every dependency answers, else 503 with each check's status, latency and detail."""
    runtime = await asyncio.to_thread(get_runtime)
    runtime.warm_up_search_index()
    is_ready, results = await asyncio.to_thread(run_checks, runtime.readiness_checks(),
                                                runtime.telemetry.settings.ready_timeout_s)
    return json_response(readiness_body(is_ready, results), 200 if is_ready else 503)


@bp.route(route="metrics", methods=["GET"])
async def metrics(req: func.HttpRequest) -> func.HttpResponse:
    """Prometheus text: the figures this worker process also sends to Azure Monitor (any authenticated caller)."""
    try:
        runtime = await get_runtime_async()
        await runtime.trust.caller_of(req.headers)
    except WeftError as exc:
        return error_response(exc)
    body, content_type = runtime.telemetry.metrics.prometheus_text()
    return func.HttpResponse(body, status_code=200, headers={"Content-Type": content_type})


@bp.route(route="audit", methods=["GET"])
async def audit(req: func.HttpRequest) -> func.HttpResponse:
    """The audit trail for operators (``Runs.ReadAll``): ``?run_id=&caller=&since=<ISO 8601>&limit=``, newest
    records within the retention period."""
    try:
        runtime = await get_runtime_async()
        caller = await runtime.trust.caller_of(req.headers)
        caller.require(Role.RUNS_READ_ALL)
        query = parse_audit_query(req.params)
        records = await asyncio.to_thread(runtime.trust.audit.query, **query)
    except WeftError as exc:
        return error_response(exc)
    return json_response({"records": [record.model_dump(mode="json") for record in records]})


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    """The OpenAPI 3.1 document of this API (built from the pydantic models; this host as its server)."""
    from shared.api_description import openapi_document

    return json_response(openapi_document(req.url.split("/api/")[0]), headers={"Cache-Control": "max-age=300"})
