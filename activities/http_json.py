"""JSON responses for the HTTP triggers: results and errors (``{"code", "message", "field"}``)."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from shared.errors import WeftError


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, default=str), status_code=status, mimetype="application/json",
                             headers=headers)


def error_response(exc: WeftError) -> func.HttpResponse:
    return json_response(exc.to_dict(), status=exc.http_status)


def error(status: int, code: str, message: str, field: str | None = None) -> func.HttpResponse:
    return json_response({"code": code, "message": message, "field": field}, status=status)
