"""HTTP and queue entry points that start orchestrations."""

import json
import logging

import azure.durable_functions as df
import azure.functions as func

bp = df.Blueprint()
log = logging.getLogger(__name__)


@bp.route(route="jobs/fan_out", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def start_fan_out(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        payload = req.get_json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get("items"), list):
        body = {"code": "invalid_request", "message": "body must be a JSON object with a list 'items'",
                "field": "items"}
        return func.HttpResponse(json.dumps(body), status_code=400, mimetype="application/json")
    instance_id = await client.start_new("fan_out", None, payload)
    return client.create_check_status_response(req, instance_id)


@bp.queue_trigger(arg_name="msg", queue_name="jobs", connection="AzureWebJobsStorage")
@bp.durable_client_input(client_name="client")
async def fan_out_from_queue(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    payload = json.loads(msg.get_body())
    await client.start_new("fan_out", payload.get("id") or msg.id, payload)
