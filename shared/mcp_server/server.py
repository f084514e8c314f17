"""What the MCP tool triggers call: search, describe, execute, run a plan, read and cancel runs, for one caller.

Every call authenticates its caller from the MCP request's headers through ``runtime.trust.caller_of`` (the same
caller, roles, quota and audit as the HTTP API), submits runs through the one admission path
(:func:`~shared.runs.admission.submit_run`) and reads them only through :func:`~shared.runs.admission.owned_run`, so
another caller's run is "not found" here as it is over HTTP. A run is a normal durable run: ``execute`` waits up to
``WEFT_MCP_WAIT_S`` for it and otherwise answers with its id, which ``get_run`` resolves later, whatever happened to
the host in between.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shared.catalog.schema import python_identifier
from shared.errors import QUOTED_CHARS, InvalidRequest, NotFound, WeftError, quoted
from shared.identity.caller import Caller, Role
from shared.mcp_server.calls import McpAnswer, McpCall, error_answer, parse_call
from shared.mcp_server.resources import step_result_uri
from shared.mcp_server.settings import McpSettings, mcp_settings
from shared.mcp_server.signatures import compact_signature, describe
from shared.models import parse_json
from shared.runs.admission import admit_and_submit, cancel_run, owned_run, started_request
from shared.runs.run_index import RunEntry, RunIndex
from shared.runs.run_status import DurableStarter, known_status, run_view
from shared.runtime import Runtime, get_runtime_async

__all__ = ["MCP_ENDPOINT", "PRM_ROUTE", "McpServer", "RunClient", "answer", "present", "protected_resource_metadata",
           "resource_metadata_url"]

log = logging.getLogger(__name__)

PRM_ROUTE = ".well-known/oauth-protected-resource"
"""The HTTP route (under ``/api``) of the protected-resource metadata of the MCP endpoint."""
MCP_ENDPOINT = "/runtime/webhooks/mcp"
_MAX_QUERY_CHARS = 4000
_FAILED_STEPS_SHOWN = 10


class RunClient(DurableStarter, Protocol):
    """What the MCP tools need of the Durable client (``DurableOrchestrationClient`` fits)."""

    async def terminate(self, instance_id: str, reason: str) -> None: ...


def _require(arguments: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(arguments) - set(allowed))
    if unknown:
        hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
        raise InvalidRequest(f"unknown argument {quoted(unknown[0])}{hint}", field=unknown[0][:QUOTED_CHARS])


def _text(arguments: Mapping[str, Any], name: str, *, required: bool, limit: int | None = None) -> str | None:
    value = arguments.get(name)
    if value is None:
        if required:
            raise InvalidRequest(f"{name} is required", field=name)
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise InvalidRequest(f"{name} must be a non-empty string", field=name)
    if limit is not None and len(value) > limit:
        raise InvalidRequest(f"{name} may be at most {limit} characters", field=name)
    return value


def _number(arguments: Mapping[str, Any], name: str, default: float, *, low: float, high: float,
            integer: bool = False) -> float:
    value = arguments.get(name)
    if value is None:
        return default
    if isinstance(value, str):  # a client that sends every property as a string
        try:
            value = float(value) if not integer else int(value)
        except ValueError:
            raise InvalidRequest(f"{name} must be a number", field=name) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and value != int(value)):
        raise InvalidRequest(f"{name} must be {'an integer' if integer else 'a number'}", field=name)
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be from {low:g} to {high:g}", field=name)
    return value


def _names(arguments: Mapping[str, Any], name: str, *, required: bool, most: int) -> list[str] | None:
    value = arguments.get(name)
    if value is None and not required:
        return None
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise InvalidRequest(f"{name} must be a non-empty list of tool names", field=name)
    if len(value) > most:
        raise InvalidRequest(f"{name} may list at most {most} tools", field=name)
    return list(dict.fromkeys(value))


def resource_metadata_url(headers: Mapping[str, str]) -> str | None:
    """Where this app serves the MCP endpoint's protected-resource metadata, from the request's Host header."""
    lowered = {k.lower(): v for k, v in headers.items()}
    host = lowered.get("x-forwarded-host") or lowered.get("host")
    if not host or any(c in host for c in "/\\@ "):
        return None
    loopback = host.split(":")[0] in ("127.0.0.1", "localhost", "[::1]")
    scheme = lowered.get("x-forwarded-proto") or ("http" if loopback else "https")
    return f"{scheme}://{host}/api/{PRM_ROUTE}"


@dataclass
class McpServer:
    """The MCP tools for one request: the runtime, the Durable client (tools that start or read runs need it) and
    the settings."""

    runtime: Runtime
    client: RunClient | None
    settings: McpSettings

    async def answer(self, tool: str, call: McpCall) -> McpAnswer:
        """Authenticate the caller and run ``tool``; a :class:`WeftError` becomes an error result the agent reads."""
        try:
            caller = await self.runtime.trust.caller_of(call.headers)
            handler = self._handlers()[tool]
            return McpAnswer(await handler(caller, call.arguments))
        except WeftError as exc:
            log.info("mcp %s: %s (%s)", tool, exc.code, exc.field)
            return error_answer(exc, resource_metadata_url=resource_metadata_url(call.headers))

    def _handlers(self) -> dict[str, Callable[[Caller, Mapping[str, Any]], Awaitable[dict[str, Any]]]]:
        return {"search_tools": self.search_tools, "describe_tools": self.describe_tools, "execute": self.execute,
                "run_plan": self.run_plan, "get_run": self.get_run, "cancel_run": self.cancel_run}

    # ---- the catalog ------------------------------------------------------------------------------------------
    def _catalog_names(self, wanted: list[str], earlier: Sequence[str] = ()) -> tuple[list[str], list[str]]:
        """Catalog names for ``wanted`` (catalog names or the Python names code calls), and those not found; the
        ``earlier`` names (those of the run a retry repeats) resolve too, the catalog's first."""
        catalog = self.runtime.catalog
        by_ident: dict[str, str] | None = None
        found: list[str] = []
        missing: list[str] = []
        known = set(earlier)
        for name in wanted:
            if name in catalog or name in known:
                found.append(name)
                continue
            if by_ident is None:
                by_ident = {python_identifier(n): n for n in [*earlier, *catalog.names()]}
            if name in by_ident:
                found.append(by_ident[name])
            else:
                missing.append(name)
        return list(dict.fromkeys(found)), missing

    def _did_you_mean(self, name: str) -> str:
        close = self.runtime.catalog.close_names(name)
        return f"; did you mean {', '.join(map(repr, close))}?" if close else "; use search_tools to find tools"

    async def search_tools(self, caller: Caller, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """``{"tools": [compact signature, ...]}``, best match first."""
        _require(arguments, ("query", "k"))
        query = _text(arguments, "query", required=True, limit=_MAX_QUERY_CHARS)
        assert query is not None
        k = int(_number(arguments, "k", self.settings.default_k, low=1, high=self.runtime.settings.search.max_k,
                        integer=True))
        hits = await asyncio.to_thread(lambda: self.runtime.search_index.search(query.strip(), k))
        catalog = self.runtime.catalog
        signatures = [compact_signature(catalog.get(hit.name).spec) for hit in hits if hit.name in catalog]
        return {"tools": signatures}

    async def describe_tools(self, caller: Caller, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """``{"tools": [full description, ...], "unknown": [...]}``; every name unknown is an error."""
        _require(arguments, ("names",))
        wanted = _names(arguments, "names", required=True, most=self.settings.max_describe)
        assert wanted is not None
        await self.runtime.source_sync.ensure_async([n for n in wanted if "." in n or n not in self.runtime.catalog])
        found, missing = self._catalog_names(wanted)
        if not found:
            raise InvalidRequest(f"no tool named {quoted(missing[0])}{self._did_you_mean(missing[0])}", field="names")
        body: dict[str, Any] = {"tools": [describe(self.runtime.catalog.get(name).spec) for name in found]}
        if missing:
            body["unknown"] = missing
        return body

    # ---- runs -------------------------------------------------------------------------------------------------
    def _client(self) -> RunClient:
        if self.client is None:
            raise RuntimeError("this MCP tool needs the Durable client binding")
        return self.client

    async def execute(self, caller: Caller, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Start a code-mode run (durable replay) and wait up to ``wait_s`` for it."""
        caller.require(Role.RUNS_SUBMIT)  # before a retry's tool names are read from the earlier run's input
        _require(arguments, ("code", "tools", "idempotency_key"))
        code = _text(arguments, "code", required=True)
        names = _names(arguments, "tools", required=False, most=self.runtime.settings.limits.max_steps)
        body: dict[str, Any] = {"mode": "code", "code": code}
        if names is not None:
            found, missing = self._catalog_names(names)
            if missing:  # a retry of a run whose tool left the catalog since: hashed with the names it had then
                found, missing = self._catalog_names(names, await self._earlier_tools(caller, arguments))
            if missing:
                raise InvalidRequest(f"unknown tool {quoted(missing[0])}{self._did_you_mean(missing[0])}",
                                     field="tools")
            body["tools"] = found
        return await self._submit(caller, body, arguments)

    async def run_plan(self, caller: Caller, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Start a plan run and wait up to ``wait_s`` for it."""
        _require(arguments, ("plan", "idempotency_key"))
        plan = arguments.get("plan")
        if isinstance(plan, str):  # a client that sends objects as JSON text
            plan = parse_json(plan, message="plan must be a JSON object with steps", field="plan")
        if not isinstance(plan, dict):
            raise InvalidRequest("plan must be an object: {\"steps\": [...]}", field="plan")
        return await self._submit(caller, {"mode": "plan", "plan": plan}, arguments)

    async def _earlier_tools(self, caller: Caller, arguments: Mapping[str, Any]) -> list[str]:
        """The tools of the run started earlier under the call's idempotency key, if any."""
        key = _text(arguments, "idempotency_key", required=False, limit=200)
        started = await started_request(key, caller, self._client(), self.runtime.run_index) if key else None
        tools = started.get("tools") if started is not None else None
        return [name for name in tools if isinstance(name, str)] if isinstance(tools, list) else []

    async def _submit(self, caller: Caller, body: dict[str, Any], arguments: Mapping[str, Any]) -> dict[str, Any]:
        key = _text(arguments, "idempotency_key", required=False, limit=200)
        if key is not None:
            body["idempotency_key"] = key
        client = self._client()
        runtime = self.runtime
        submitted, mode = await admit_and_submit(body, runtime, caller, client, idempotency_key=None, via="mcp")
        if not submitted.replayed:
            await runtime.trust.audit_event("run.submit", caller, run_id=submitted.run_id, detail=mode)
        return await self._wait(submitted.run_id, self.settings.wait_s, 0)

    async def get_run(self, caller: Caller, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The run's status, progress, what awaits approval, or its result (paged when large)."""
        _require(arguments, ("run_id", "wait_s", "offset"))
        run_id = _text(arguments, "run_id", required=True, limit=128)
        assert run_id is not None
        wait_s = _number(arguments, "wait_s", 0.0, low=0.0, high=self.settings.max_wait_s)
        offset = int(_number(arguments, "offset", 0, low=0, high=2**53, integer=True))
        entry = await self._owned(run_id, caller, readers=(Role.RUNS_READ_ALL,))
        return await self._wait(entry.run_id, wait_s, offset, index=self.runtime.run_index)

    async def cancel_run(self, caller: Caller, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Terminate the caller's run if it has not finished."""
        _require(arguments, ("run_id",))
        run_id = _text(arguments, "run_id", required=True, limit=128)
        assert run_id is not None
        entry = await self._owned(run_id, caller, readers=())
        await cancel_run(self._client(), self.runtime, entry, caller, "canceled by the caller (MCP)", field="run_id")
        return {"run_id": entry.run_id, "status": "canceling"}

    async def _owned(self, run_id: str, caller: Caller, *, readers: tuple[Role, ...]) -> RunEntry:
        try:
            return await owned_run(run_id.strip(), caller, self.runtime.run_index, readers=readers)
        except NotFound as exc:
            exc.field = "run_id"  # the argument's name here (the HTTP API's is the route's "id")
            raise

    async def _wait(self, run_id: str, wait_s: float, offset: int, *, index: RunIndex | None = None
                    ) -> dict[str, Any]:
        """Poll the run until it ends, waits for an approval, or ``wait_s`` passes; then present it. With
        ``index``: a run Durable does not know whose entry is gone too (purged elsewhere) is not found at once."""
        client = self._client()
        deadline = time.monotonic() + wait_s
        while True:
            status = await (known_status(client, index, run_id, field="run_id") if index is not None
                            else client.get_status(run_id, show_input=False))
            index = None  # asked once, on the first read
            runtime_status = status.runtime_status.value if status.runtime_status is not None else None
            custom = status.custom_status if isinstance(status.custom_status, dict) else {}
            view = run_view(run_id, runtime_status, status.custom_status, status.output, status.created_time,
                            status.last_updated_time)
            left = deadline - time.monotonic()
            if view["status"] not in ("pending", "running") or view["stage"] == "awaiting_approval" or left <= 0:
                return present(view, custom, offset, self.settings.max_answer_chars)
            await asyncio.sleep(min(self.settings.poll_interval_s, left))


def present(view: Mapping[str, Any], custom: Mapping[str, Any], offset: int, max_chars: int) -> dict[str, Any]:
    """A run as an MCP answer: compact (the output, errors, a count of steps and the failed ones), the output paged
    when its JSON is longer than ``max_chars``; a run still going says how to follow it."""
    run_id = view["id"]
    body: dict[str, Any] = {"run_id": run_id, "status": view["status"]}
    if view["status"] in ("pending", "running"):
        if view.get("stage"):
            body["stage"] = view["stage"]
        if view.get("progress"):
            body["progress"] = view["progress"]
        if view.get("stage") == "awaiting_approval":
            body["awaiting_approval"] = {"tools": custom.get("tools") or [], "expires_at": custom.get("expires_at"),
                                         "how": f"a caller with Runs.Approve: POST /api/runs/{run_id}/approve"}
        body["next"] = f"get_run(run_id={run_id!r}, wait_s=30)"
        return body
    raw = view.get("result")
    result: dict[str, Any] = raw if isinstance(raw, dict) else {}
    steps = result.get("steps") or []
    failed = [{"step_id": s.get("step_id"), "tool": s.get("tool"), "error": s.get("error")}
              for s in steps if s.get("status") not in ("succeeded", None)]
    if view.get("errors"):
        body["errors"] = view["errors"]
    if steps:
        body["steps"] = {"total": len(steps), "failed": failed[:_FAILED_STEPS_SHOWN]}
        stored = [step_result_uri(run_id, str(s.get("step_id"))) for s in steps
                  if isinstance(s.get("result"), dict) and "blob_ref" in s["result"]]
        if stored:  # results kept in payload storage: read whole as MCP resources
            body["stored_results"] = stored[:_FAILED_STEPS_SHOWN]
    output_text = json.dumps(result.get("output"), default=str, separators=(",", ":"), ensure_ascii=False)
    if offset == 0 and len(output_text) <= max_chars:
        body["output"] = result.get("output")
    else:
        end = min(len(output_text), offset + max_chars)
        body["output_page"] = {"offset": offset, "total_chars": len(output_text), "text": output_text[offset:end],
                               "next_offset": end if end < len(output_text) else None}
    return body


async def answer(tool: str, context: str | bytes | Mapping[str, Any], client: RunClient | None = None) -> str:
    """The whole of an MCP tool trigger: parse the payload, serve ``tool`` for its caller, return the envelope."""
    try:
        call = parse_call(context)
    except WeftError as exc:
        return error_answer(exc).envelope()
    runtime = await get_runtime_async()
    server = McpServer(runtime, client, mcp_settings())
    return (await server.answer(tool, call)).envelope()


async def protected_resource_metadata(base_url: str) -> dict[str, Any]:
    """The RFC 9728 document of the MCP endpoint at ``base_url`` (the app's origin): the Entra authority and scope a
    client asks a token for. Raises :class:`~shared.errors.NotConfigured` when identity is off."""
    runtime = await get_runtime_async()
    return runtime.trust.authenticator.protected_resource_metadata(base_url.rstrip("/") + MCP_ENDPOINT)
