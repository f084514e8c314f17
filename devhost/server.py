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

from devhost.durable_api import RPC_PREFIX, WEBHOOK_PREFIX, DurableApi, client_binding
from devhost.http_errors import MalformedPath, error_response, host_path, json_errors_middleware
from devhost.index import FunctionEntry, FunctionIndex
from devhost.keys import AccessLevel, FunctionKeys
from devhost.workers import InvocationContext, TraceContext

__all__ = ["FunctionInvoker", "HttpLimits", "build_web_app"]

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
        durable_code: str = "devhost",
    ) -> None:
        self.index = index
        self._base_url = base_url
        self._send_to_queue = send_to_queue
        self.durable_code = durable_code

    async def invoke(self, entry: FunctionEntry, trigger_value: Any) -> Any:
        kwargs: dict[str, Any] = {entry.trigger_param: trigger_value}
        for param in entry.client_params:
            kwargs[param] = client_binding(self._base_url(), self.index.task_hub, code=self.durable_code)
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


def _route_level(entry: FunctionEntry, default: str) -> str:
    level = getattr(entry.trigger, "auth_level", None)
    return str(getattr(level, "value", level) or default).lower()


def _unauthorized(what: str) -> web.Response:
    return error_response(
        401, f"{what} needs a valid key in the x-functions-key header or the code query parameter", field="code"
    )


def build_web_app(
    index: FunctionIndex,
    invoker: FunctionInvoker,
    durable: DurableApi,
    *,
    keys: FunctionKeys | None = None,
    limits: HttpLimits | None = None,
    extra_routes: list[web.RouteDef] | None = None,
    extra_middlewares: list[Any] | None = None,
) -> web.Application:
    """The aiohttp application serving everything the devhost exposes over HTTP.

    ``keys`` turns on function-key checks like the host's; ``None`` leaves every route open, as Core Tools does.
    """
    limits = limits or HttpLimits()
    middlewares = [json_errors_middleware(limits.max_url_bytes, limits.max_body_bytes), *(extra_middlewares or [])]
    if keys is not None:
        middlewares.append(_keys_middleware(keys))
    app = web.Application(client_max_size=limits.max_body_bytes, middlewares=middlewares)
    app.add_routes(durable.routes())
    app.add_routes(extra_routes or [])
    prefix = "/" + index.route_prefix if index.route_prefix else ""

    async def admin_invoke(request: web.Request) -> web.Response:
        entry = index.functions.get(request.match_info["name"])
        if entry is None or entry.trigger_type == "httpTrigger":
            return error_response(404, "no non-HTTP function has this name", field="name")
        body: Any = {}
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return error_response(400, "the body is not JSON", field="body")
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

    def _allowed_elsewhere(request: web.Request) -> set[str]:
        """Methods the devhost's own routes (Durable API, admin, MCP) accept for this path."""
        allowed: set[str] = set()
        for resource in app.router.resources():
            if resource is catch_all:
                continue
            info = resource.get_info()
            pattern = info.get("pattern")
            path = info.get("path")
            if (pattern is not None and pattern.fullmatch(request.path)) or path == request.path:
                allowed |= {route.method for route in resource if route.method != "*"}
        return allowed

    async def dispatch(request: web.Request) -> web.StreamResponse:
        try:
            path = host_path(request.raw_path)
        except MalformedPath as exc:
            return error_response(400, str(exc), field="url")
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            allowed = _allowed_elsewhere(request)
            if allowed:
                return error_response(
                    405, f"method {request.method} is not allowed here", headers={"Allow": ", ".join(sorted(allowed))}
                )
            return error_response(404, "no route matches this URL", field="url")
        rest = path[len(prefix) :] or "/"
        allowed = set()
        for route in index.routes:
            match = route.pattern.fullmatch(rest)
            if match is None:
                continue
            if route.methods is not None and request.method not in route.methods:
                allowed |= route.methods
                continue
            if keys is not None:
                level = _route_level(route.entry, AccessLevel.FUNCTION)
                presented = FunctionKeys.presented(request.headers, request.query)
                if not keys.authorize(presented, level, function=route.entry.name):
                    return _unauthorized(f"function {route.entry.name!r}")
            params = {key: raw for key, raw in match.groupdict().items() if raw is not None}
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
                return error_response(500, f"function {route.entry.name!r} failed; the devhost log has the error")
            return _to_response(result)
        if allowed:
            return error_response(
                405, f"method {request.method} is not allowed here", headers={"Allow": ", ".join(sorted(allowed))}
            )
        return error_response(404, "no route matches this URL", field="url")

    catch_all = app.router.add_resource(r"/{tail:[\s\S]*}")  # newlines too: the host routes them
    catch_all.add_route("*", dispatch)
    return app


def _keys_middleware(keys: FunctionKeys) -> Any:
    """Keys for the routes the host itself serves: ``/admin`` (master key) and extension webhooks (system keys).

    The rpc prefix the app's Durable client calls (``/durabletask/``) is the host's local-only channel: it answers
    loopback peers only. App routes are checked in ``dispatch`` once the route, and so its level, is known.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path
        presented = FunctionKeys.presented(request.headers, request.query)
        if path == "/admin" or path.startswith("/admin/"):
            if not keys.authorize(presented, AccessLevel.ADMIN):
                return _unauthorized("the admin API")
        elif path.startswith(WEBHOOK_PREFIX + "/") or path == WEBHOOK_PREFIX:
            if not keys.authorize(presented, AccessLevel.SYSTEM, system="durabletask_extension"):
                return _unauthorized("the Durable Functions HTTP API")
        elif path.startswith(RPC_PREFIX + "/") and request.remote not in LOOPBACK:
            return error_response(403, "the Durable rpc endpoint answers local callers only")
        return await handler(request)

    return middleware


LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})


class HttpLimits:
    """Request limits of the devhost's HTTP layer; the defaults are the Functions host's (100 MB body, 4 KB URL)."""

    def __init__(self, max_body_bytes: int = 100 * 1024 * 1024, max_url_bytes: int = 4096) -> None:
        self.max_body_bytes = max_body_bytes
        self.max_url_bytes = max_url_bytes


def decode_queue_body(raw: str, encoding: str) -> bytes:
    """Queue message text → bytes, honouring host.json ``messageEncoding`` (base64 by default)."""
    if encoding == "none":
        return raw.encode()
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError as exc:
        raise ValueError("queue message is not valid base64 (host.json messageEncoding is base64)") from exc
