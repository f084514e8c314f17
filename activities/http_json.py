"""JSON responses for the HTTP triggers: results and errors (``{"code", "message", "field"}``)."""

from __future__ import annotations

import json
import math
from typing import Any

import azure.functions as func

from shared.errors import InvalidRequest, RateLimited, WeftError


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, default=str), status_code=status, mimetype="application/json",
                             headers=headers)


def error_response(exc: WeftError) -> func.HttpResponse:
    """The JSON error body with the error's status; ``Retry-After`` (whole seconds) when a quota is spent, and
    ``WWW-Authenticate: Bearer`` on 401 (RFC 6750)."""
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    if exc.http_status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return json_response(exc.to_dict(), status=exc.http_status, headers=headers or None)


def error(status: int, code: str, message: str, field: str | None = None) -> func.HttpResponse:
    return json_response({"code": code, "message": message, "field": field}, status=status)


class UnsupportedMediaType(InvalidRequest):
    """A request body declared as something other than JSON (HTTP 415)."""

    code = "unsupported_media_type"
    http_status = 415


class PayloadTooLarge(InvalidRequest):
    """A request body over its route's limit (HTTP 413); measured before parsing, never echoed."""

    code = "payload_too_large"
    http_status = 413


def json_body(req: func.HttpRequest, max_bytes: int) -> bytes:
    """The request body, checked before anyone parses it: at most ``max_bytes``, and declared as JSON
    (``application/json`` or ``application/*+json``; a body without a Content-Type is read as JSON too)."""
    body = req.get_body() or b""
    if not body:
        return body
    media = (req.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if media and media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaType("the body must be JSON: send it with Content-Type: application/json",
                                   field="Content-Type")
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"the body may be at most {max_bytes} bytes, it is {len(body)}", field="body")
    return body
