"""The Durable Functions HTTP API, served at the client's ``rpcBaseUrl`` and at the public webhook URLs.

The Python ``DurableOrchestrationClient`` posts payloads as ``json=df_dumps(value)``: the body is a JSON *string*
holding the serialized value, so on the rpc prefix the body is decoded once and stored verbatim. The public
``/runtime/webhooks/durabletask`` URLs take the raw JSON value, as documented for the HTTP API.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web

from devhost.engine import TERMINAL, Engine, InstanceStatus, OrchestratorNotFound
from devhost.http_errors import error_body, error_response
from devhost.store import InstanceRow

__all__ = ["RPC_PREFIX", "WEBHOOK_PREFIX", "DurableApi", "client_binding"]

RPC_PREFIX = "/durabletask"
WEBHOOK_PREFIX = "/runtime/webhooks/durabletask"


@functools.lru_cache(maxsize=16)
def client_binding(base_url: str, task_hub: str, connection: str = "Storage", code: str = "devhost") -> str:
    """The JSON the host passes to a ``durable_client_input`` parameter (built once per host and hub: every
    invocation of a function with a Durable client gets it).

    ``code`` is the ``durabletask_extension`` system key when the devhost enforces keys, as in the host's URLs.
    """
    hook = f"{base_url}{WEBHOOK_PREFIX}"
    code = quote(code, safe="")
    query = f"taskHub={quote(task_hub)}&connection={connection}&code={code}"
    instance = f"{hook}/instances/INSTANCEID"
    return json.dumps(
        {
            "taskHubName": task_hub,
            "creationUrls": {
                "createNewInstancePostUri": f"{hook}/orchestrators/{{functionName}}[/{{instanceId}}]?code={code}",
                "createAndWaitOnNewInstancePostUri": (
                    f"{hook}/orchestrators/{{functionName}}[/{{instanceId}}]?timeout={{timeoutInSeconds}}"
                    f"&pollingInterval={{intervalInSeconds}}&code={code}"
                ),
            },
            "managementUrls": {
                "id": "INSTANCEID",
                "statusQueryGetUri": f"{instance}?{query}",
                "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{query}",
                "terminatePostUri": f"{instance}/terminate?reason={{text}}&{query}",
                "rewindPostUri": f"{instance}/rewind?reason={{text}}&{query}",
                "purgeHistoryDeleteUri": f"{instance}?{query}",
                "restartPostUri": f"{instance}/restart?{query}",
                "suspendPostUri": f"{instance}/suspend?reason={{text}}&{query}",
                "resumePostUri": f"{instance}/resume?reason={{text}}&{query}",
            },
            "rpcBaseUrl": f"{base_url}{RPC_PREFIX}/",
            "requiredQueryStringParameters": query,
            "httpBaseUrl": hook,
        }
    )


@functools.lru_cache(maxsize=16)
def _management_urls(base_url: str, code: str) -> dict[str, str]:
    """The binding's management URLs with the placeholder ``INSTANCEID`` (treat as read-only: it is shared)."""
    urls: dict[str, str] = json.loads(client_binding(base_url, "devhost", code=code))["managementUrls"]
    return urls


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _bad_request("a timestamp filter is not ISO 8601", "createdTimeFrom") from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def _bad_request(message: str, field: str) -> web.HTTPBadRequest:
    body = error_body(400, message, field) | {"Message": message}
    return web.HTTPBadRequest(text=json.dumps(body), content_type="application/json")


def _missing(instance_id: str) -> web.Response:
    del instance_id  # never echoed: ids are caller input
    return error_response(404, "no instance with this id", field="instance_id")


def _gone() -> web.Response:
    return error_response(410, "the instance has already finished", field="instance_id", code="gone")


def _value(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


class DurableApi:
    """aiohttp handlers for the Durable HTTP API; ``engine`` does the work."""

    def __init__(self, engine: Engine, base_url: str, code: str = "devhost") -> None:
        self.engine = engine
        self.base_url = base_url
        self.code = code

    def routes(self) -> list[web.RouteDef]:
        defs: list[web.RouteDef] = []
        for prefix in (RPC_PREFIX, WEBHOOK_PREFIX):
            defs += [
                web.post(prefix + "/orchestrators/{name}", self.start),
                web.post(prefix + "/orchestrators/{name}/{instance_id}", self.start),
                web.get(prefix + "/instances", self.list),
                web.get(prefix + "/instances/", self.list),
                web.delete(prefix + "/instances", self.purge_by),
                web.delete(prefix + "/instances/", self.purge_by),
                web.get(prefix + "/instances/{instance_id}", self.status),
                web.delete(prefix + "/instances/{instance_id}", self.purge),
                web.post(prefix + "/instances/{instance_id}/raiseEvent/{event}", self.raise_event),
                web.post(prefix + "/instances/{instance_id}/terminate", self.terminate),
                web.post(prefix + "/instances/{instance_id}/suspend", self.suspend),
                web.post(prefix + "/instances/{instance_id}/resume", self.resume),
                web.post(prefix + "/instances/{instance_id}/restart", self.restart),
                web.post(prefix + "/instances/{instance_id}/rewind", self.rewind),
            ]
        return defs

    async def _payload(self, request: web.Request) -> str | None:
        body = await request.text()
        if not body:
            return None
        if request.path.startswith(RPC_PREFIX + "/"):
            try:
                decoded = json.loads(body)
            except json.JSONDecodeError as exc:
                raise _bad_request("the body is not JSON", "body") from exc
            return decoded if isinstance(decoded, str) else body
        try:
            json.loads(body)
        except json.JSONDecodeError as exc:
            raise _bad_request("the body is not JSON", "body") from exc
        return body

    def _links(self, instance_id: str) -> dict[str, str]:
        return {k: v.replace("INSTANCEID", instance_id) for k, v in _management_urls(self.base_url, self.code).items()}

    async def start(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        payload = await self._payload(request)
        try:
            instance_id = self.engine.start_new(name, request.match_info.get("instance_id"), payload)
        except OrchestratorNotFound:
            return web.json_response(
                error_body(400, "no orchestrator function has this name", "name")
                | {
                    "Message": "One or more of the arguments submitted is incorrect",
                    "ExceptionMessage": f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator "
                    "function.",
                    "ExceptionType": "System.ArgumentException",
                },
                status=400,
            )
        except FileExistsError:
            message = "an instance with this id is already running"
            return web.json_response(
                error_body(409, message, "instance_id") | {"Message": message, "ExceptionMessage": message}, status=409
            )
        body = self._links(instance_id)
        return web.json_response(body, status=202, headers={"Location": body["statusQueryGetUri"]})

    def _status_json(self, inst: InstanceRow, query: Mapping[str, str]) -> dict[str, Any]:
        show_input = query.get("showInput", "true").lower() != "false"
        data: dict[str, Any] = {
            "name": inst.name,
            "instanceId": inst.id,
            "runtimeStatus": inst.status,
            "input": _value(inst.input) if show_input else None,
            "customStatus": _value(inst.custom_status),
            "output": _value(inst.output),
            "createdTime": _iso(inst.created),
            "lastUpdatedTime": _iso(inst.updated),
        }
        if query.get("showHistory", "").lower() == "true":
            with_output = query.get("showHistoryOutput", "").lower() == "true"
            events = [json.loads(e) for e in self.engine.store.load_history(inst.id)]
            if not with_output:
                for e in events:
                    e.pop("Result", None)
                    e.pop("Input", None)
            data["historyEvents"] = events
        return data

    async def status(self, request: web.Request) -> web.Response:
        code, body = self.status_reply(request.match_info["instance_id"], request.query)
        return web.json_response(body, status=code)

    def status_reply(self, instance_id: str, query: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """The status query's HTTP status and JSON body. The body holds only values fresh from ``json.loads`` and
        strings, so it equals its own JSON round trip (:mod:`devhost.local_rpc` hands it to the app as it is)."""
        inst = self.engine.store.read_instance(instance_id)
        if inst is None:
            return 404, error_body(404, "no instance with this id", "instance_id")
        code = {
            InstanceStatus.COMPLETED: 200,
            InstanceStatus.FAILED: 400 if query.get("returnInternalServerErrorOnFailure") != "true" else 500,
            InstanceStatus.TERMINATED: 400,
        }.get(InstanceStatus(inst.status), 202)
        return code, self._status_json(inst, query)

    def _filtered(self, request: web.Request) -> list[InstanceRow]:
        statuses = [s for s in request.query.get("runtimeStatus", "").split(",") if s]
        top = request.query.get("top")
        return self.engine.store.list_instances(
            statuses=statuses or None,
            created_from=_epoch(request.query.get("createdTimeFrom")),
            created_to=_epoch(request.query.get("createdTimeTo")),
            prefix=request.query.get("instanceIdPrefix") or None,
            limit=int(top) if top and len(top) <= 9 and top.isascii() and top.isdigit() else None,
        )

    async def list(self, request: web.Request) -> web.Response:
        return web.json_response([self._status_json(i, request.query) for i in self._filtered(request)])

    async def purge(self, request: web.Request) -> web.Response:
        deleted = self.engine.store.purge([request.match_info["instance_id"]])
        if not deleted:
            return _missing(request.match_info.get("instance_id", ""))
        return web.json_response({"instancesDeleted": deleted})

    async def purge_by(self, request: web.Request) -> web.Response:
        rows = [i for i in self._filtered(request) if InstanceStatus(i.status) in TERMINAL]
        deleted = self.engine.store.purge([i.id for i in rows])
        if not deleted:
            return _missing(request.match_info.get("instance_id", ""))
        return web.json_response({"instancesDeleted": deleted})

    def _gone_or_missing(self, instance_id: str) -> web.Response:
        inst = self.engine.store.get_instance(instance_id)
        return _missing(instance_id) if inst is None else _gone()

    async def raise_event(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        payload = await self._payload(request)
        if not self.engine.raise_event(instance_id, request.match_info["event"], payload):
            return self._gone_or_missing(instance_id)
        return web.Response(status=202)

    async def terminate(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        if not self.engine.terminate(instance_id, request.query.get("reason")):
            return self._gone_or_missing(instance_id)
        return web.Response(status=202)

    async def suspend(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        if not self.engine.suspend(instance_id, request.query.get("reason")):
            return self._gone_or_missing(instance_id)
        return web.Response(status=202)

    async def resume(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        if not self.engine.resume(instance_id, request.query.get("reason")):
            return self._gone_or_missing(instance_id)
        return web.Response(status=202)

    async def restart(self, request: web.Request) -> web.Response:
        inst = self.engine.store.get_instance(request.match_info["instance_id"])
        if inst is None:
            return _missing(request.match_info.get("instance_id", ""))
        if InstanceStatus(inst.status) not in TERMINAL:
            return _gone()
        new_id = None if request.query.get("restartWithNewInstanceId", "true").lower() == "true" else inst.id
        instance_id = self.engine.start_new(inst.name, new_id, inst.input)
        return web.json_response(instance_id, status=202)

    async def rewind(self, request: web.Request) -> web.Response:
        message = "rewind is deprecated in Durable Functions and not supported by the devhost"
        return web.json_response(error_body(501, message) | {"Message": message}, status=501)
