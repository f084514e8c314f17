"""HTTP API for the tool catalog."""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from activities.http_json import error, json_response
from shared.runtime import get_runtime

bp = df.Blueprint()


@bp.route(route="tools", methods=["GET"])
def list_tools(req: func.HttpRequest) -> func.HttpResponse:
    catalog = get_runtime().catalog
    tools = [{"name": s.name, "description": s.description, "tags": s.tags, "source": s.source,
              "side_effects": s.side_effects} for s in catalog.specs()]
    return json_response({"version": catalog.version, "count": len(tools), "tools": tools})


@bp.route(route="tools/{name}", methods=["GET"])
def get_tool(req: func.HttpRequest) -> func.HttpResponse:
    catalog = get_runtime().catalog
    name = req.route_params["name"]
    if name not in catalog:
        return error(404, "tool_not_found", f"no tool named {name!r}", "name")
    return json_response(catalog.get(name).spec.model_dump(mode="json"))
