"""The OpenAPI 3.1 document of Weft's HTTP API, built from the pydantic models of the JSON contract.

Every HTTP route of the app is one :class:`Operation` in :data:`OPERATIONS` (a test compares them with the routes
the blueprints register). Request and response schemas come from the models (:mod:`shared.models`,
:mod:`shared.results`, :mod:`shared.api_schemas`, the source configurations), so the document cannot drift from
what the code validates. Every error status a route answers is listed with the error body ``{code, message,
field}``; ``default`` covers what the host's HTTP layer may answer on any route (404, 405, 413, 414, 415, 429).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, RootModel
from pydantic.json_schema import models_json_schema

from shared.api_schemas import (
    ApprovalReply,
    ApprovalRequest,
    AuditList,
    CancelReply,
    ErrorBody,
    Health,
    Ready,
    ReloadReply,
    RemovedSource,
    RunLinks,
    RunList,
    RunView,
    SearchReply,
    SearchRequestBody,
    ToolList,
)
from shared.models import IDEMPOTENCY_KEY_PATTERN, NAME_PATTERN, RunRequest, ToolSpec
from shared.sources.config import SourceConfig
from shared.sources.loader import SourceReport

__all__ = ["OPERATIONS", "Operation", "SourceRegistration", "openapi_document"]

API_VERSION = "0.1.0"
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"


class SourceRegistration(RootModel[SourceConfig]):
    """``POST /api/tools/sources``: one entry of the sources file (``type: openapi`` or ``type: mcp``)."""


_ERRORS = {
    400: "The request is invalid; `field` names the offending input.",
    401: "No caller could be established (identity on: missing, expired or untrusted bearer token).",
    403: "The caller lacks the role the action needs (the message names it).",
    404: "No such resource for this caller (another caller's run is not found either).",
    409: "The request contradicts stored state (idempotency key bound to another body, run already finished...).",
    413: "The body is larger than the route's limit.",
    415: "The body is not declared as JSON (send `Content-Type: application/json`).",
    429: "The caller's request rate or concurrent-run quota is spent; see `Retry-After`.",
    503: "A dependency or a setting is missing (task mode without an LLM endpoint, ...).",
}


@dataclass(frozen=True)
class Operation:
    """One route: method, path (under ``/api``), its bodies and every status it answers."""

    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    responses: dict[int, type[BaseModel] | None]
    """Status -> body model; ``None`` for an error status (the error body)."""
    request: type[BaseModel] | None = None
    params: tuple[dict[str, Any], ...] = ()
    anonymous: bool = False
    description: str = ""
    request_example: Any = None
    examples: dict[int, Any] = field(default_factory=dict)
    content_types: dict[int, str] = field(default_factory=dict)
    """Status -> media type when not ``application/json``."""


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path(name: str, pattern: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "pattern": pattern},
            "description": description}


_RUN_ID = _path("id", RUN_ID_PATTERN, "The run's id (`id` of the `POST /api/runs` answer).")
_DEMO_PLAN = {"mode": "plan", "plan": {"steps": [
    {"id": "distance", "tool": "convert_units", "args": {"value": 26.2, "from_unit": "mi", "to_unit": "km"}},
    {"id": "back", "tool": "convert_units", "args": {"value": {"$ref": "distance.result"}, "from_unit": "km",
                                                     "to_unit": "mi"}},
]}, "options": {"max_parallel": 8}, "metadata": {"example": "marathon"}}
_ERROR_EXAMPLE = {"code": "plan_invalid", "message": "plan.steps[0].tool: unknown tool 'add'",
                  "field": "plan.steps[0].tool"}

OPERATIONS: tuple[Operation, ...] = (
    Operation("post", "/api/runs", "startRun", "Start a run (plan, code or task)", "runs",
              {202: RunLinks, 200: RunLinks, 400: None, 401: None, 403: None, 409: None, 413: None, 415: None,
               429: None, 503: None},
              request=RunRequest, request_example=_DEMO_PLAN,
              params=({"name": "Idempotency-Key", "in": "header", "required": False,
                       "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
                       "description": "Same key and same body from the same caller: the same run (200, "
                                      "`Idempotent-Replayed: true`); same key, other body: 409."},),
              description="202 with the run's links; follow it with `GET /api/runs/{id}`. A plan's `args` may hold "
                          '`{"$ref": "stepId.path"}` references to earlier results (see docs/api.md).',
              examples={202: {"id": "run-3f2a", "statusUrl": "http://localhost:7071/api/runs/run-3f2a",
                              "cancelUrl": "http://localhost:7071/api/runs/run-3f2a/cancel"}, 400: _ERROR_EXAMPLE}),
    Operation("get", "/api/runs", "listRuns", "List runs, newest first, one page at a time", "runs",
              {200: RunList, 400: None, 401: None, 403: None, 429: None},
              params=(_query("status", {"type": "string", "enum": ["pending", "running", "completed",
                                                                     "completed_with_errors", "failed", "canceled"]},
                             "Keep only runs with this status (filters the page)."),
                      _query("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                             "Runs per page."),
                      _query("all", {"type": "boolean", "default": False},
                             "Everyone's runs (needs `Runs.ReadAll`)."),
                      _query("continuation", {"type": "string", "maxLength": 1024},
                             "The `continuation` of the previous page.")),
              examples={200: {"runs": [{"id": "run-3f2a", "status": "completed", "stage": "done",
                                        "progress": {"done": 2, "total": 2, "failed": 0, "skipped": 0,
                                                     "elapsed_ms": 41.0},
                                        "errors": [], "created_at": "2026-12-07T10:00:00+00:00",
                                        "updated_at": "2026-12-07T10:00:01+00:00", "mode": "plan"}],
                                "continuation": None}}),
    Operation("get", "/api/runs/{id}", "getRun", "A run: status, stage, progress, steps, approvals, result",
              "runs", {200: RunView, 202: RunView, 400: None, 401: None, 404: None, 429: None},
              params=(_RUN_ID, _query("wait", {"type": "integer", "minimum": 0, "maximum": 9999},
                                      "Long polling: answer as soon as the run changes or ends, else after this "
                                      "many seconds (capped by WEFT_RUN_WAIT_MAX_S)."),
                      _query("until", {"type": "string", "enum": ["change", "end"]},
                             "What `wait` waits for: any change of the run (`change`, the default: a new stage, a "
                             "finished step), or only its end or a call awaiting approval (`end`).")),
              description="202 while the run is pending or running, 200 once it finished."),
    Operation("get", "/api/runs/{id}/steps/{step_id}/result", "getStepResult",
              "The whole result of one step of a finished run", "runs",
              {200: None, 401: None, 404: None, 429: None},
              params=(_RUN_ID, _path("step_id", r"^[A-Za-z_][A-Za-z0-9_-]{0,199}$", "The step's id.")),
              description="Also when the run's record keeps only a reference and a preview (large results live in "
                          "payload storage). The body is the result's JSON value."),
    Operation("post", "/api/runs/{id}/cancel", "cancelRun", "Cancel a run", "runs",
              {202: CancelReply, 401: None, 404: None, 409: None, 429: None},
              params=(_RUN_ID, _query("reason", {"type": "string", "maxLength": 500}, "Why (kept with the run).")),),
    Operation("post", "/api/runs/{id}/approve", "approveRun", "Approve or deny the tool calls a run waits on",
              "runs", {202: ApprovalReply, 400: None, 401: None, 403: None, 404: None, 409: None, 413: None,
                       415: None, 429: None},
              request=ApprovalRequest, params=(_RUN_ID,),
              request_example={"approved": True, "reason": "checked the recipient"},
              description="Needs `Runs.Approve`; by default never on the caller's own run. Without `call_ids`, "
                          "every call waiting is decided."),
    Operation("get", "/api/tools", "listTools", "The catalog's tools and sources", "tools",
              {200: ToolList, 401: None, 429: None}),
    Operation("get", "/api/tools/{name}", "getTool", "One tool's spec, with its argument schema", "tools",
              {200: ToolSpec, 401: None, 404: None, 429: None},
              params=(_path("name", NAME_PATTERN, "The tool's name."),)),
    Operation("post", "/api/tools/search", "searchTools", "Search the catalog (BM25 + embeddings)", "tools",
              {200: SearchReply, 400: None, 401: None, 413: None, 415: None, 429: None},
              request=SearchRequestBody, request_example={"query": "convert miles to kilometers", "k": 3}),
    Operation("post", "/api/tools/reload", "reloadCatalog", "Rebuild the catalog from its configuration", "tools",
              {200: ReloadReply, 401: None, 403: None, 429: None}, description="Needs `Tools.Admin`."),
    Operation("post", "/api/tools/sources", "addSource", "Register an OpenAPI or MCP source for every instance",
              "tools", {201: SourceReport, 200: SourceReport, 400: None, 401: None, 403: None, 413: None, 415: None,
                        429: None, 503: None},
              request=SourceRegistration,
              request_example={"type": "openapi", "url": "https://api.example.com/openapi.json", "alias": "pets"},
              description="Needs `Tools.Admin`. 201 when registered, 200 when it was registered already. An `auth` "
                          "secret must be one an operator bound to the source's host."),
    Operation("delete", "/api/tools/sources/{id}", "removeSource", "Remove a source registered through the API",
              "tools", {200: RemovedSource, 401: None, 403: None, 404: None, 429: None},
              params=(_path("id", r"^[0-9a-f]{64}$", "The source's `source_id` (from the registration answer)."),),
              description="Needs `Tools.Admin`. Its tools leave this catalog now and every other instance's at its "
                          "next registry check."),
    Operation("get", "/api/health", "health", "Liveness (no dependency is called)", "operations",
              {200: Health}, anonymous=True),
    Operation("get", "/api/ready", "ready", "Readiness: every dependency with status and latency", "operations",
              {200: Ready, 503: Ready}, anonymous=True),
    Operation("get", "/api/metrics", "metrics", "Prometheus metrics of this worker", "operations",
              {200: None, 401: None, 429: None}, content_types={200: "text/plain"}),
    Operation("get", "/api/audit", "audit", "The audit trail (operators, `Runs.ReadAll`)", "operations",
              {200: AuditList, 400: None, 401: None, 403: None, 429: None},
              params=(_query("run_id", {"type": "string", "minLength": 1, "maxLength": 300}, "One run's records."),
                      _query("caller", {"type": "string", "minLength": 1, "maxLength": 300}, "One caller's."),
                      _query("since", {"type": "string", "format": "date-time"}, "Records at or after (ISO 8601)."),
                      _query("limit", {"type": "integer", "minimum": 1, "maximum": 99999, "default": 100},
                             "Most records."))),
    Operation("get", "/api/.well-known/oauth-protected-resource", "protectedResource",
              "OAuth protected-resource metadata of the MCP endpoint (identity on)", "operations",
              {200: None, 404: None}, anonymous=True),
    Operation("get", "/api/openapi.json", "openapi", "This document", "operations", {200: None}, anonymous=True),
)


_Mode = Literal["validation", "serialization"]
_Refs = dict[tuple[type[BaseModel], str], dict[str, Any]]


def _schemas() -> tuple[_Refs, dict[str, Any]]:
    models: list[tuple[type[BaseModel], _Mode]] = [(ErrorBody, "serialization")]
    for op in OPERATIONS:
        if op.request is not None:
            models.append((op.request, "validation"))
        models.extend((model, "serialization") for model in op.responses.values() if model is not None)
    unique = list(dict.fromkeys(models))
    refs, top = models_json_schema(unique, ref_template="#/components/schemas/{model}")
    return {(model, mode): schema for (model, mode), schema in refs.items() if isinstance(model, type)
            and issubclass(model, BaseModel)}, top.get("$defs", {})


def _response(op: Operation, status: int, refs: _Refs) -> dict[str, Any]:
    model = op.responses[status]
    media = op.content_types.get(status, "application/json")
    if model is None and status >= 400:
        schema: dict[str, Any] = refs[(ErrorBody, "serialization")]
        description = _ERRORS.get(status, "Error.")
    elif model is None:
        schema, description = ({"type": "string"} if media.startswith("text/") else {}), "OK."
    else:
        schema = refs[(model, "serialization")]
        description = (model.__doc__ or "OK.").strip().split("\n\n")[0]
    content: dict[str, Any] = {"schema": schema}
    if status in op.examples:
        content["example"] = op.examples[status]
    out: dict[str, Any] = {"description": description, "content": {media: content}}
    if status == 429:
        out["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}
    return out


@functools.cache
def _document() -> dict[str, Any]:
    refs, defs = _schemas()
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        responses = {str(status): _response(op, status, refs) for status in sorted(op.responses)}
        responses["default"] = {"description": "An error of the host's HTTP layer (unknown route, wrong method, "
                                               "body or URL too large) or any other error: the error body.",
                                "content": {"application/json": {"schema": refs[(ErrorBody, "serialization")]}}}
        entry: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "tags": [op.tag],
                                 "responses": responses}
        if op.description:
            entry["description"] = op.description
        if op.params:
            entry["parameters"] = [dict(p) for p in op.params]
        if op.request is not None:
            body: dict[str, Any] = {"schema": refs[(op.request, "validation")]}
            if op.request_example is not None:
                body["example"] = op.request_example
            entry["requestBody"] = {"required": True, "content": {"application/json": body}}
        if op.anonymous:
            entry["security"] = []
        paths.setdefault(op.path, {})[op.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "Weft", "version": API_VERSION,
                 "description": "Durable tool orchestration: run plans, code or tasks over a catalog of tools. "
                                "Errors are always `{code, message, field}`. See docs/api.md."},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "tags": [{"name": "runs"}, {"name": "tools"}, {"name": "operations"}],
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key",
                                "description": "An Azure Functions function or host key (also `?code=`)."},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                           "description": "A Microsoft Entra ID access token for the app (WEFT_AUTH_MODE=bearer); "
                                          "app roles: Runs.Submit, Runs.ReadAll, Runs.Approve, Tools.Admin."},
            },
        },
        # Locally (devhost, keys off, WEFT_AUTH_MODE=none) no credential is needed: the empty requirement says so.
        "security": [{"functionKey": []}, {"functionKeyQuery": []}, {"bearer": []}, {"functionKey": [], "bearer": []},
                     {}],
    }


def openapi_document(server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh copy); ``server_url`` (``http://host:port``) becomes ``servers``."""
    document = copy.deepcopy(_document())
    if server_url:
        document["servers"] = [{"url": server_url.rstrip("/")}]
    return document
