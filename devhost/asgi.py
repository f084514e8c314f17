"""Serve one ASGI application (the ``mcp`` SDK's Streamable HTTP transport) from an aiohttp handler."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aiohttp import web

__all__ = ["AsgiApp", "call_asgi"]

Message = MutableMapping[str, Any]
AsgiApp = Callable[[Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

DISCONNECT_POLL_S = 0.5
"""How often a waiting ``receive()`` checks whether the client went away (aiohttp has no disconnect event)."""


async def call_asgi(
    app: AsgiApp,
    request: web.Request,
    body: bytes,
    *,
    extra_response_headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Run ``app`` for ``request`` whose body was already read; stream its response back through aiohttp."""
    host, _, port = (request.host or "127.0.0.1").partition(":")
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.raw_path.split("?", 1)[0].encode("latin-1", "replace"),
        "query_string": request.query_string.encode("latin-1", "replace"),
        "root_path": "",
        "headers": [(k.lower(), v) for k, v in request.raw_headers],
        "client": (request.remote or "", 0),
        "server": (host, int(port) if port.isdigit() else 80),
        "state": {},
    }
    finished = asyncio.Event()
    sent_body = False
    response: web.StreamResponse | None = None

    async def receive() -> Message:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        while not finished.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            try:
                await asyncio.wait_for(finished.wait(), DISCONNECT_POLL_S)
            except TimeoutError:
                continue
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal response
        if message["type"] == "http.response.start":
            response = web.StreamResponse(status=message["status"])
            for key, value in message.get("headers", []):
                response.headers.add(key.decode("latin-1"), value.decode("latin-1"))
            for key, value in (extra_response_headers or {}).items():
                response.headers.setdefault(key, value)
            await response.prepare(request)
        elif message["type"] == "http.response.body" and response is not None:
            chunk = message.get("body", b"")
            if chunk:
                await response.write(chunk)
            if not message.get("more_body", False):
                await response.write_eof()

    try:
        await app(scope, receive, send)
    finally:
        finished.set()
    if response is None:
        raise web.HTTPInternalServerError(reason="the MCP transport sent no response")
    return response
