"""JSON responses for the HTTP triggers: results and errors (``{"code", "message", "field"}``)."""

from __future__ import annotations

import json
import math
from typing import Any

import azure.functions as func

from shared.errors import RateLimited, WeftError


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
