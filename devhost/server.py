"""The devhost's HTTP server: the app's HTTP functions under the route prefix, the Durable HTTP API, and the
Core Tools style admin endpoints for invoking non-HTTP functions."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import azure.functions as func
from aiohttp import web
from azure.functions.timer import TimerRequest

from devhost.durable_api import DurableApi, client_binding
from devhost.index import FunctionEntry, FunctionIndex
from devhost.workers import InvocationContext, TraceContext

__all__ = ["FunctionInvoker", "build_web_app"]

log = logging.getLogger(__name__)


class OutBinding(func.Out):
    """The value a function sets on an output binding (the worker's ``Out``)."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class FunctionInvoker:
    """Calls app functions as the Python worker does: bindings as keyword arguments, coroutines awaited."""

    def __init__(
        self,
        index: FunctionIndex,
        base_url: Callable[[], str],
        send_to_queue: Callable[[str, str, list[str]], None] | None = None,
    ) -> None:
        self.index = index
        self._base_url = base_url
        self._send_to_queue = send_to_queue

    async def invoke(self, entry: FunctionEntry, trigger_value: Any) -> Any:
        kwargs: dict[str, Any] = {entry.trigger_param: trigger_value}
        for param in entry.client_params:
            kwargs[param] = client_binding(self._base_url(), self.index.task_hub)
        outputs = {param: OutBinding() for param, _, _ in entry.queue_outputs}
        kwargs.update(outputs)
        if entry.wants_context:
            headers = trigger_value.headers if isinstance(trigger_value, func.HttpRequest) else {}
            trace = TraceContext.for_invocation(headers.get("traceparent"), headers.get("tracestate") or "")
            kwargs["context"] = InvocationContext(entry.name, str(uuid.uuid4()), str(self.index.app_dir), trace)
        if inspect.iscoroutinefunction(entry.fn):
            result = await entry.fn(**kwargs)
        else:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(None, lambda: entry.fn(**kwargs))
        for param, queue_name, connection in entry.queue_outputs:
            value = outputs[param].get()
            if value is None:
                continue
            if self._send_to_queue is None:
                raise RuntimeError(f"{entry.name}: queue output {queue_name!r} needs storage (AzureWebJobsStorage)")
            messages = value if isinstance(value, list) else [value]
            texts = [
                m.decode() if isinstance(m, bytes) else m if isinstance(m, str) else json.dumps(m) for m in messages
            ]
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self._send_to_queue, connection, queue_name, texts)
        return result


def _to_response(result: Any) -> web.Response:
    if result is None:
        return web.Response(status=204)
    if isinstance(result, func.HttpResponse):
        headers = {k: v for k, v in result.headers.items() if k.lower() != "content-length"}
        if result.mimetype and "content-type" not in {k.lower() for k in headers}:
            charset = f"; charset={result.charset}" if result.charset else ""
            headers["Content-Type"] = f"{result.mimetype}{charset}"
        return web.Response(status=result.status_code, body=result.get_body(), headers=headers)
    if isinstance(result, str | bytes):
        return web.Response(status=200, body=result.encode() if isinstance(result, str) else result)
    return web.json_response(result)


def build_web_app(index: FunctionIndex, invoker: FunctionInvoker, durable: DurableApi) -> web.Application:
    """The aiohttp application serving everything the devhost exposes over HTTP."""
    app = web.Application(client_max_size=100 * 1024 * 1024)
    app.add_routes(durable.routes())
    prefix = "/" + index.route_prefix if index.route_prefix else ""

    async def admin_invoke(request: web.Request) -> web.Response:
        entry = index.functions.get(request.match_info["name"])
        if entry is None or entry.trigger_type == "httpTrigger":
            return web.json_response({"error": "no such non-HTTP function"}, status=404)
        body = await request.json() if request.can_read_body else {}
        raw = body.get("input") if isinstance(body, dict) else None
        if entry.trigger_type == "queueTrigger":
            value: Any = func.QueueMessage(id=str(uuid.uuid4()), body=(raw or "").encode())
        elif entry.trigger_type == "timerTrigger":
            value = TimerRequest(past_due=False)
        else:
            value = raw
        await invoker.invoke(entry, value)
        return web.Response(status=202)

    app.router.add_post("/admin/functions/{name}", admin_invoke)

    async def dispatch(request: web.Request) -> web.StreamResponse:
        path = request.path
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            raise web.HTTPNotFound()
        rest = path[len(prefix) :] or "/"
        allowed: set[str] = set()
        for route in index.routes:
            match = route.pattern.match(rest)
            if match is None:
                continue
            if route.methods is not None and request.method not in route.methods:
                allowed |= route.methods
                continue
            params = {}
            for key, raw in match.groupdict().items():
                if raw is None:
                    continue
                params[key] = raw
            body = await request.read()
            req = func.HttpRequest(
                method=request.method,
                url=str(request.url),
                headers=dict(request.headers),
                params=dict(request.query),
                route_params=params,
                body=body,
            )
            try:
                result = await invoker.invoke(route.entry, req)
            except Exception:
                log.exception("Executed 'Functions.%s' (Failed)", route.entry.name)
                return web.Response(status=500)
            return _to_response(result)
        if allowed:
            return web.Response(status=405, headers={"Allow": ", ".join(sorted(allowed))})
        raise web.HTTPNotFound()

    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


def decode_queue_body(raw: str, encoding: str) -> bytes:
    """Queue message text → bytes, honouring host.json ``messageEncoding`` (base64 by default)."""
    if encoding == "none":
        return raw.encode()
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError as exc:
        raise ValueError("queue message is not valid base64 (host.json messageEncoding is base64)") from exc
