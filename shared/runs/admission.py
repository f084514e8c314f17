"""What the run triggers need from the core: admitting a request, naming its instance, and presenting a run.

The HTTP and queue triggers stay a few lines each by calling these; nothing here knows about Azure Functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from datetime import datetime
from typing import Any

from shared.errors import InvalidRequest, NotConfigured, OrchestrationFailed, RunCanceled
from shared.llm.chat import LLM_NOT_CONFIGURED_MESSAGE
from shared.models import RunRequest, parse_run_request, validate_request
from shared.runs.code_run import code_tools
from shared.runs.contracts import CustomStatus
from shared.runs.names import Orchestrator
from shared.runs.plan import validate_plan
from shared.runtime import Runtime
from shared.sandbox.policy import check_code

__all__ = [
    "RUN_ORCHESTRATOR",
    "RUN_STATUSES",
    "admit_run_request",
    "durable_statuses_for",
    "parse_approval",
    "run_instance_id",
    "run_view",
]

RUN_ORCHESTRATOR: str = Orchestrator.RUN
RUN_STATUSES = ("pending", "running", "completed", "completed_with_errors", "failed", "canceled")
_KEY_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
LLM_MODES = ("task",)


def admit_run_request(body: bytes | str | dict[str, Any], runtime: Runtime) -> RunRequest:
    """Parse and check a run request as far as can be told before starting it; raises :class:`InvalidRequest`
    (HTTP 400, naming the field) or :class:`NotConfigured` (HTTP 503). Blocking: a tool the catalog lacks makes it
    look in the source registry first."""
    if isinstance(body, bytes | str) and not body:
        raise InvalidRequest("the body must be a JSON run request", field="body")
    size = len(body) if isinstance(body, bytes | str) else 0
    limit = runtime.settings.limits.max_plan_bytes + 64 * 1024
    if size > limit:
        raise InvalidRequest(f"the body may be at most {limit} bytes, it is {size}", field="body")
    try:
        request = parse_run_request(body)
    except InvalidRequest as exc:
        exc.field = exc.field or "body"
        raise
    validate_request(request, runtime.settings.limits)
    if request.mode in LLM_MODES and runtime.chat_model is None:
        raise NotConfigured(LLM_NOT_CONFIGURED_MESSAGE, field="mode")
    named = list(request.tools or ()) + ([step.tool for step in request.plan.steps] if request.plan else [])
    runtime.source_sync.ensure(named)  # a source registered on another instance a moment ago
    if request.code is not None:
        code_tools(runtime.catalog, request.tools)
        try:
            check_code(request.code, max_code_bytes=runtime.settings.sandbox.max_code_bytes)
        except SyntaxError as exc:
            raise InvalidRequest(f"the code does not parse: {exc.msg} (line {exc.lineno})", field="code") from None
    if request.plan is not None:
        validate_plan(request.plan, runtime.catalog)
    return request


def parse_approval(body: bytes | str) -> dict[str, Any]:
    """``{"approved": bool, "reason": str}`` from an approve request; raises :class:`InvalidRequest` naming the
    field."""
    import json

    try:
        data = json.loads(body or b"null")
    except ValueError:
        raise InvalidRequest("the body must be JSON: {\"approved\": true|false, \"reason\": \"...\"}",
                             field="body") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object", field="body")
    if not isinstance(data.get("approved"), bool):
        raise InvalidRequest("approved must be true or false", field="approved")
    reason = data.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 2000:
        raise InvalidRequest("reason must be a string of at most 2000 characters", field="reason")
    unknown = sorted(set(data) - {"approved", "reason"})
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}", field=unknown[0])
    return {"approved": data["approved"], "reason": reason}


def run_instance_id(idempotency_key: str | None, fallback: str | None = None) -> str | None:
    """The orchestration instance id for a request: derived from its idempotency key, so the same key always
    names the same run; else ``fallback`` (e.g. a queue message id); else ``None`` (a fresh id)."""
    if idempotency_key:
        if _KEY_SAFE.match(idempotency_key):
            return f"run-{idempotency_key}"
        return "run-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return fallback


def durable_statuses_for(status: str) -> list[str]:
    """Durable runtime statuses that may hold runs with our ``status`` (finer filtering happens on output)."""
    return {
        "pending": ["Pending"],
        "running": ["Running", "Pending", "Suspended"],
        "completed": ["Completed"],
        "completed_with_errors": ["Completed"],
        "failed": ["Completed", "Failed"],
        "canceled": ["Terminated", "Canceled"],
    }[status]


def run_view(
    instance_id: str,
    runtime_status: str | None,
    custom_status: Any,
    output: Any,
    created: datetime | None,
    updated: datetime | None,
) -> dict[str, Any]:
    """A run as callers see it: ``{id, status, stage, progress, result, errors, created_at, updated_at}``."""
    view: dict[str, Any] = {
        "id": instance_id,
        "status": "pending",
        "stage": None,
        "progress": None,
        "result": None,
        "errors": [],
        "created_at": created.isoformat() if created else None,
        "updated_at": updated.isoformat() if updated else None,
    }
    custom = CustomStatus()
    if isinstance(custom_status, dict):
        with contextlib.suppress(ValueError):  # a status this version cannot read shows no stage or progress
            custom = CustomStatus.model_validate(custom_status)
    view["stage"] = None if custom.stage is None else str(custom.stage)
    view["progress"] = custom.progress
    if runtime_status in ("Pending", None):
        view["status"] = "pending"
    elif runtime_status in ("Running", "Suspended", "ContinuedAsNew"):
        view["status"] = "running"
    elif runtime_status == "Completed" and isinstance(output, dict):
        view["status"] = output.get("status", "completed")
        view["result"] = output
        view["errors"] = output.get("errors", [])
    elif runtime_status == "Terminated":
        view["status"] = "canceled"
        view["errors"] = [{"code": RunCanceled.code, "message": str(output or "canceled"), "field": None}]
    else:
        view["status"] = "failed"
        view["errors"] = [{"code": OrchestrationFailed.code, "message": str(output), "field": None}]
    return view
