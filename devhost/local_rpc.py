"""The app's Durable client calls to this devhost's rpc endpoint, answered in-process by the same handlers.

The Python ``DurableOrchestrationClient`` talks to the host over HTTP on localhost (``rpcBaseUrl``). The devhost runs
the app in its own process, so a start or status call would be parsed by aiohttp twice (client and server) and cross
a socket to reach the handler sitting next to it; under load that transport costs more CPU than the work. This module
routes the hot calls (start, status, raise event, terminate) to :class:`devhost.durable_api.DurableApi`'s own
handlers with a minimal request object, and returns what the SDK's ``get_async_request``/``post_async_request`` would
have: ``[status, parsed JSON body]``. The request body is encoded exactly as aiohttp would send it and the response
body goes through JSON, so the app sees the same values (a status body is built of fresh ``json.loads`` values and
strings, equal to its own round trip, so it is handed over as built). Every other URL (other hosts, other routes,
anything percent-encoded) takes the real HTTP path. ``DEVHOST_LOCAL_RPC=0`` turns the shortcut off.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from yarl import URL

from devhost.durable_api import RPC_PREFIX, DurableApi

__all__ = ["enabled", "register", "unregister"]

_ROUTES: dict[str, DurableApi] = {}
_LOCK = threading.Lock()
_originals: dict[str, Any] = {}


def enabled(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the shortcut is on (``DEVHOST_LOCAL_RPC``, default on)."""
    return env.get("DEVHOST_LOCAL_RPC", "1").lower() not in ("0", "false", "no")


class _Request:
    """What the Durable API handlers read from an aiohttp request."""

    def __init__(self, method: str, url: URL, match_info: dict[str, str], body: str) -> None:
        self.method = method
        self.path = url.path
        self.query: MultiDictProxy[str] = MultiDictProxy(MultiDict(url.query))
        self.match_info = match_info
        self._body = body

    async def text(self) -> str:
        return self._body


def _route(method: str, url: URL) -> tuple[str, dict[str, str]] | None:
    """(handler name, match info) for the hot rpc routes, else None."""
    if "%" in url.raw_path or not url.raw_path.startswith(RPC_PREFIX + "/"):
        return None
    parts = url.raw_path[len(RPC_PREFIX) + 1 :].split("/")
    if method == "POST" and parts[0] == "orchestrators" and len(parts) in (2, 3) and all(parts):
        info = {"name": parts[1]} | ({"instance_id": parts[2]} if len(parts) == 3 else {})
        return "start", info
    if parts[0] != "instances" or len(parts) < 2 or not parts[1]:
        return None
    if method == "GET" and len(parts) == 2:
        return "status", {"instance_id": parts[1]}
    if method == "POST" and len(parts) == 3 and parts[2] == "terminate":
        return "terminate", {"instance_id": parts[1]}
    if method == "POST" and len(parts) == 4 and parts[2] == "raiseEvent" and parts[3]:
        return "raise_event", {"instance_id": parts[1], "event": parts[3]}
    return None


async def _answer(api: DurableApi, method: str, url: URL, body: str) -> list[Any] | None:
    route = _route(method, url)
    if route is None:
        return None
    name, info = route
    if name == "status":  # the hot one (long polling reads it every few ms): its body skips the JSON round trip
        return list(api.status_reply(info["instance_id"], url.query))
    handler: Callable[[Any], Awaitable[web.StreamResponse]] = getattr(api, name)
    try:
        response = await handler(_Request(method, url, info, body))
    except web.HTTPException as exc:
        response = exc
    raw = getattr(response, "body", None) or getattr(response, "text", None) or b""
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    try:
        data = json.loads(text) if text else None
    except json.JSONDecodeError:
        data = text
    return [response.status, data]


def _lookup(url: str) -> tuple[DurableApi, URL] | None:
    if not _ROUTES:
        return None
    parsed = URL(url)
    api = _ROUTES.get(str(parsed.origin())) if parsed.is_absolute() else None
    return None if api is None else (api, parsed)


async def _get(url: str, function_invocation_id: str | None = None) -> list[Any]:
    found = _lookup(url)
    if found is not None and (answer := await _answer(found[0], "GET", found[1], "")) is not None:
        return answer
    result: list[Any] = await _originals["get"](url, function_invocation_id)
    return result


async def _post(url: str, data: Any = None, trace_parent: str | None = None, trace_state: str | None = None,
                function_invocation_id: str | None = None) -> list[Any]:
    found = _lookup(url)
    if found is not None:
        body = "" if data is None else json.dumps(data)  # what aiohttp's ``json=data`` puts on the wire
        if (answer := await _answer(found[0], "POST", found[1], body)) is not None:
            return answer
    result: list[Any] = await _originals["post"](url, data, trace_parent, trace_state, function_invocation_id)
    return result


def register(base_url: str, api: DurableApi) -> None:
    """Answer the app's rpc calls to ``base_url`` in-process (installs the SDK hook on first use)."""
    client_module: Any = importlib.import_module("azure.durable_functions.models.DurableOrchestrationClient")
    with _LOCK:
        if not _originals:
            _originals["get"] = client_module.get_async_request
            _originals["post"] = client_module.post_async_request
            client_module.get_async_request = _get
            client_module.post_async_request = _post
        _ROUTES[str(URL(base_url).origin())] = api


def unregister(base_url: str) -> None:
    """Send the app's rpc calls to ``base_url`` over HTTP again."""
    with _LOCK:
        _ROUTES.pop(str(URL(base_url).origin()), None)
