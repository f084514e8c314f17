"""HTTP API for the tool catalog: list, get, search (any caller); reload, register a source for every instance
(``Tools.Admin``)."""

from __future__ import annotations

import asyncio

import azure.durable_functions as df
import azure.functions as func

from activities.http_json import error, error_response, json_body, json_response
from shared.api_limits import api_limits
from shared.errors import NotFound, WeftError, quoted
from shared.identity.caller import Role
from shared.models import parse_json
from shared.runtime import get_runtime, get_runtime_async, reset_runtime
from shared.search.api import load_model_with_app, parse_search_request, search_tools

bp = df.Blueprint()
load_model_with_app()


@bp.route(route="tools", methods=["GET"])
async def list_tools(req: func.HttpRequest) -> func.HttpResponse:
    try:
        runtime = await get_runtime_async()
        await runtime.trust.caller_of(req.headers)
    except WeftError as exc:
        return error_response(exc)
    tools = [{"name": s.name, "description": s.description, "tags": s.tags, "source": s.source,
              "side_effects": s.side_effects} for s in runtime.catalog.specs()]
    sources = [r.model_dump(mode="json", exclude={"tools"}) for r in runtime.source_reports]
    return json_response({"version": runtime.catalog.version, "count": len(tools), "tools": tools,
                          "sources": sources})


@bp.route(route="tools/search", methods=["POST"])
async def search(req: func.HttpRequest) -> func.HttpResponse:
    try:
        runtime = await get_runtime_async()
        await runtime.trust.caller_of(req.headers)
        request = parse_search_request(json_body(req, api_limits().max_json_body_bytes), runtime.settings.search)
    except WeftError as exc:
        return error_response(exc)
    return json_response(await asyncio.to_thread(lambda: search_tools(runtime.search_index, request)))


@bp.route(route="tools/reload", methods=["POST"])
async def reload_catalog(req: func.HttpRequest) -> func.HttpResponse:
    """Rebuild the catalog from its configuration (demo tools, catalog files, tool sources)."""
    try:
        old = await get_runtime_async()
        caller = await old.trust.caller_of(req.headers)
        caller.require(Role.TOOLS_ADMIN)
    except WeftError as exc:
        return error_response(exc)
    reset_runtime(None)
    runtime = await asyncio.to_thread(get_runtime)
    await runtime.trust.audit_event("catalog.reload", caller, detail=f"{len(runtime.catalog)} tools")
    return json_response({"version": runtime.catalog.version, "count": len(runtime.catalog),
                          "sources": [r.model_dump(mode="json", exclude={"tools"}) for r in runtime.source_reports]})


@bp.route(route="tools/sources", methods=["POST"])
async def add_source(req: func.HttpRequest) -> func.HttpResponse:
    """Register an OpenAPI (by URL) or streamable-HTTP MCP source in the shared source registry; its tools join the
    catalog of every instance. 201 when registered, 200 when it was registered already (idempotent)."""
    try:
        runtime = await get_runtime_async()
        caller = await runtime.trust.caller_of(req.headers)
        caller.require(Role.TOOLS_ADMIN)
        body = parse_json(json_body(req, api_limits().max_json_body_bytes) or b"null",
                          message="the body must be a JSON source configuration")
        registration = await runtime.source_sync.register(body)
    except WeftError as exc:
        return error_response(exc)
    await runtime.trust.audit_event("source.register", caller, outcome="ok",
                                    detail=f"{registration.report.source_id} ({registration.report.tool_count} tools)")
    return json_response(registration.report.model_dump(mode="json"), 201 if registration.created else 200)


@bp.route(route="tools/sources/{id}", methods=["DELETE"])
async def remove_source(req: func.HttpRequest) -> func.HttpResponse:
    """Remove a source registered through the API (``Tools.Admin``): its tools leave this catalog now and every
    other instance's at its next registry check."""
    try:
        runtime = await get_runtime_async()
        caller = await runtime.trust.caller_of(req.headers)
        caller.require(Role.TOOLS_ADMIN)
        sid = req.route_params["id"]
        if not (len(sid) == 64 and all(c in "0123456789abcdef" for c in sid)):
            raise NotFound("no registered source with this id", field="id")
        removed = await runtime.source_sync.unregister(sid)
    except WeftError as exc:
        return error_response(exc)
    await runtime.trust.audit_event("source.remove", caller, detail=f"{sid} ({len(removed)} tools)")
    return json_response({"id": sid, "removed_tools": removed})


@bp.route(route="tools/{name}", methods=["GET"])
async def get_tool(req: func.HttpRequest) -> func.HttpResponse:
    try:
        runtime = await get_runtime_async()
        await runtime.trust.caller_of(req.headers)
    except WeftError as exc:
        return error_response(exc)
    name = req.route_params["name"]
    await runtime.source_sync.ensure_async([name])
    catalog = runtime.catalog
    if name not in catalog:
        return error(404, "tool_not_found", f"no tool named {quoted(name)}", "name")
    return json_response(catalog.get(name).spec.model_dump(mode="json"))
