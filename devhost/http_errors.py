"""The devhost's HTTP layer answers every error it produces with the JSON body ``{code, message, field}``.

That covers what aiohttp would answer in plain text or HTML: unknown routes, wrong methods, bodies and URLs over the
limits, requests the HTTP parser rejects. Paths are read the way Kestrel (the Functions host's server) reads them:
percent-decoded except ``%2F``, then dot segments removed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

__all__ = [
    "JsonErrorRunner",
    "MalformedPath",
    "error_response",
    "host_path",
    "json_errors_middleware",
]

log = logging.getLogger(__name__)

_CODES = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    410: "gone",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
    504: "timeout",
}


def error_code(status: int) -> str:
    return _CODES.get(status, "client_error" if status < 500 else "server_error")


def error_body(status: int, message: str, field: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"code": code or error_code(status), "message": message, "field": field}


def error_response(
    status: int,
    message: str,
    *,
    field: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A JSON error response: ``{"code", "message", "field"}``."""
    return web.Response(
        status=status,
        text=json.dumps(error_body(status, message, field, code)),
        content_type="application/json",
        headers=dict(headers or {}),
    )


class MalformedPath(ValueError):
    """The request path is not valid percent-encoded UTF-8."""


def host_path(raw_path: str) -> str:
    """The request path as the host routes it: decoded except ``%2F``, dot segments removed.

    ``/api/a%2Fb`` stays one segment ``a%2Fb`` (a route parameter receives the ``%2F`` as is); ``%2E%2E`` is ``..``
    and climbs like it. Raises ``MalformedPath`` for bytes that are not UTF-8.
    """
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    pieces = []
    for part in path.replace("%2f", "%2F").split("%2F"):
        try:
            pieces.append(unquote_to_bytes(part).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise MalformedPath("the request path is not valid UTF-8 after percent-decoding") from exc
    decoded = "%2F".join(pieces)
    out: list[str] = []
    segments = decoded.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
            continue
        if segment == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
            continue
        out.append(segment)
    result = "/".join(out)
    return result if result.startswith("/") else "/" + result


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_errors_middleware(max_url_bytes: int, max_body_bytes: int) -> Any:
    """Middleware: URL and body limits up front, and every aiohttp HTTP error turned into the JSON error body."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if len(request.raw_path.encode()) > max_url_bytes:
            return error_response(414, f"the URL is longer than {max_url_bytes} bytes", field="url")
        length = request.content_length
        if length is not None and length > max_body_bytes:
            too_large = error_response(413, f"the request body is larger than {max_body_bytes} bytes", field="body")
            too_large.force_close()  # the body is never read: the connection cannot carry another request
            return too_large
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            if exc.content_type == "application/json" and exc.text and exc.text.startswith("{"):
                return web.Response(
                    status=exc.status,
                    text=exc.text,
                    content_type="application/json",
                    headers={k: v for k, v in exc.headers.items() if k.lower() != "content-type"},
                )
            headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
            message = {
                404: "no route matches this URL",
                405: f"method {request.method} is not allowed here",
                413: f"the request body is larger than {max_body_bytes} bytes",
            }.get(exc.status, exc.reason)
            return error_response(exc.status, message, headers=headers)

    return middleware


_REQUEST_LINE = re.compile(r"reading: (?:bytearray\()?b'(?:[A-Z]+ )?(?:/|https?:)")


class _JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering parser and handler failures with the JSON error body."""

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        resp = super().handle_error(request, status, exc, message)  # logs and checks nothing was sent yet
        if isinstance(exc, LineTooLong):
            # The parsers quote the start of the line: the request target (C parser) or the request line (Python).
            is_url = _REQUEST_LINE.search(str(exc)) is not None
            status, text = (414, "the URL is too long") if is_url else (431, "a request header is too long")
        elif isinstance(exc, HttpProcessingError):
            text = "the request is not valid HTTP"
        elif status >= 500:
            text = "the devhost failed to handle the request"
        else:
            text = "the request could not be handled"
        json_resp = error_response(status, text)
        json_resp.force_close()
        del resp
        return json_resp


class _JsonErrorServer(Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer even malformed HTTP with the JSON error body."""

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer  # same state, only the handler factory differs
        return server
