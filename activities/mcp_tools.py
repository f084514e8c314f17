"""Weft's MCP server: six tool triggers the Functions MCP extension serves at ``/runtime/webhooks/mcp``, and the
protected-resource metadata (RFC 9728) MCP clients read to get a token. Each trigger hands the extension's payload
to :func:`shared.mcp_server.answer`."""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from activities.http_json import error_response, json_response
from shared.errors import NotConfigured, NotFound
from shared.mcp_server import PRM_ROUTE, answer, protected_resource_metadata, tool_def
from shared.mcp_server.resources import STEP_RESULT_TEMPLATE, read_step_result

bp = df.Blueprint()


def _trigger(name: str) -> dict[str, object]:
    tool = tool_def(name)
    return {"arg_name": "context", "tool_name": tool.name, "description": tool.description,
            "tool_properties": tool.tool_properties, "use_result_schema": True}


@bp.mcp_tool_trigger(**_trigger("search_tools"))
async def mcp_search_tools(context: str) -> str:
    return await answer("search_tools", context)


@bp.mcp_tool_trigger(**_trigger("describe_tools"))
async def mcp_describe_tools(context: str) -> str:
    return await answer("describe_tools", context)


@bp.mcp_tool_trigger(**_trigger("execute"))
@bp.durable_client_input(client_name="client")
async def mcp_execute(context: str, client: df.DurableOrchestrationClient) -> str:
    return await answer("execute", context, client)


@bp.mcp_tool_trigger(**_trigger("run_plan"))
@bp.durable_client_input(client_name="client")
async def mcp_run_plan(context: str, client: df.DurableOrchestrationClient) -> str:
    return await answer("run_plan", context, client)


@bp.mcp_tool_trigger(**_trigger("get_run"))
@bp.durable_client_input(client_name="client")
async def mcp_get_run(context: str, client: df.DurableOrchestrationClient) -> str:
    return await answer("get_run", context, client)


@bp.mcp_tool_trigger(**_trigger("cancel_run"))
@bp.durable_client_input(client_name="client")
async def mcp_cancel_run(context: str, client: df.DurableOrchestrationClient) -> str:
    return await answer("cancel_run", context, client)


@bp.mcp_resource_trigger(arg_name="context", uri=STEP_RESULT_TEMPLATE, resource_name="step_result",
                         description="The whole result of one step of a finished run (get_run names the resources "
                                     "of results too large to show).", mime_type="application/json")
@bp.durable_client_input(client_name="client")
async def mcp_step_result(context: str, client: df.DurableOrchestrationClient) -> str:
    return await read_step_result(context, client)


@bp.route(route=PRM_ROUTE, methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def mcp_protected_resource(req: func.HttpRequest) -> func.HttpResponse:
    """Where MCP clients learn which Entra authority and scope a token for ``/runtime/webhooks/mcp`` needs."""
    try:
        document = await protected_resource_metadata(req.url.split("/api/")[0])
    except NotConfigured:
        return error_response(NotFound("identity is off: the MCP endpoint takes no bearer token", field="url"))
    return json_response(document, headers={"Cache-Control": "max-age=3600"})
