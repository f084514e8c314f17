"""HTTP API for the tool catalog: list, get, search, reload, register a source."""

from __future__ import annotations

import asyncio
import json

import azure.durable_functions as df
import azure.functions as func

from activities.http_json import error, error_response, json_response
from shared.errors import WeftError
from shared.runtime import get_runtime, reset_runtime
from shared.search_api import parse_search_request, search_tools
from shared.sources.loader import register_source

bp = df.Blueprint()


@bp.route(route="tools", methods=["GET"])
def list_tools(req: func.HttpRequest) -> func.HttpResponse:
    runtime = get_runtime()
    tools = [{"name": s.name, "description": s.description, "tags": s.tags, "source": s.source,
              "side_effects": s.side_effects} for s in runtime.catalog.specs()]
    sources = [r.model_dump(mode="json", exclude={"tools"}) for r in runtime.source_reports]
    return json_response({"version": runtime.catalog.version, "count": len(tools), "tools": tools,
                          "sources": sources})


@bp.route(route="tools/search", methods=["POST"])
async def search(req: func.HttpRequest) -> func.HttpResponse:
    runtime = get_runtime()
    try:
        request = parse_search_request(req.get_body(), runtime.settings.search)
    except WeftError as exc:
        return error_response(exc)
    return json_response(await asyncio.to_thread(search_tools, runtime.search_index, request))


@bp.route(route="tools/reload", methods=["POST"])
async def reload_catalog(req: func.HttpRequest) -> func.HttpResponse:
    """Rebuild the catalog from its configuration (demo tools, catalog files, tool sources)."""
    reset_runtime(None)
    runtime = await asyncio.to_thread(get_runtime)
    return json_response({"version": runtime.catalog.version, "count": len(runtime.catalog),
                          "sources": [r.model_dump(mode="json", exclude={"tools"}) for r in runtime.source_reports]})


@bp.route(route="tools/sources", methods=["POST"])
async def add_source(req: func.HttpRequest) -> func.HttpResponse:
    """Register an OpenAPI (by URL) or streamable-HTTP MCP source; its tools join the catalog of this instance."""
    runtime = get_runtime()
    try:
        body = json.loads(req.get_body() or b"null")
    except ValueError:
        return error(400, "invalid_request", "the body must be a JSON source configuration", "body")
    try:
        report = await register_source(runtime.catalog, body, runtime.settings.sources, secrets=runtime.secrets,
                                       cache=runtime.discovery_cache)
    except WeftError as exc:
        return error_response(exc)
    runtime.catalog_changed()
    runtime.source_reports.append(report)
    return json_response(report.model_dump(mode="json"), 201)


@bp.route(route="tools/{name}", methods=["GET"])
def get_tool(req: func.HttpRequest) -> func.HttpResponse:
    catalog = get_runtime().catalog
    name = req.route_params["name"]
    if name not in catalog:
        return error(404, "tool_not_found", f"no tool named {name!r}", "name")
    return json_response(catalog.get(name).spec.model_dump(mode="json"))
