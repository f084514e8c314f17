"""Pydantic models of the HTTP API's bodies that have no model elsewhere: what the routes answer, the error body,
and the small request bodies parsed by hand (approval, search). They describe the wire format for the OpenAPI
document (:mod:`shared.api_description`) and the client (:mod:`weftclient`); the routes keep building plain dicts.

Response models allow extra keys, so a field added later does not make old clients or the document wrong.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.results import ErrorInfo, RunMode, RunResult, RunStatus
from shared.runs.approval import MAX_APPROVAL_CALL_IDS, MAX_CALL_ID_CHARS
from shared.runs.custom_status import PendingApproval

__all__ = [
    "ApprovalReply",
    "ApprovalRequest",
    "AuditList",
    "AwaitingApproval",
    "CancelReply",
    "ErrorBody",
    "Health",
    "Ready",
    "ReadyCheck",
    "ReloadReply",
    "RemovedSource",
    "RunLinks",
    "RunList",
    "RunProgress",
    "RunSummary",
    "RunView",
    "SearchFilters",
    "SearchHit",
    "SearchReply",
    "SearchRequestBody",
    "StepView",
    "ToolList",
    "ToolSummary",
]


class _Reply(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorBody(_Reply):
    """Every 4xx and 5xx answer, from the app and from the host's HTTP layer alike."""

    code: str
    """Stable machine-readable name: ``invalid_request``, ``plan_invalid``, ``not_found``, ``rate_limited``, ..."""
    message: str
    """What went wrong, written so the caller can fix it; never echoes unbounded input."""
    field: str | None
    """The offending input (``plan.steps[2].tool``, ``limit``, ``Content-Type``, ``body``) or null."""


class RunLinks(_Reply):
    """``POST /api/runs`` answer: the run's id and where to follow and cancel it (Weft's routes only: the Durable
    management URLs carry the task hub's system key and are never returned)."""

    id: str
    statusUrl: str
    cancelUrl: str


class RunProgress(_Reply):
    """Steps done out of the total known so far."""

    done: int
    total: int
    failed: int = 0
    skipped: int = 0
    elapsed_ms: float | None = None


class AwaitingApproval(_Reply):
    """The tool calls a run waits on: approve them with ``POST /api/runs/{id}/approve``."""

    calls: list[PendingApproval]
    expires_at: str | None = None
    """When the approval times out (ISO 8601)."""
    sub_run: str | None = None
    """The sub-run of a task that waits (the approval is still sent to the task's id)."""
    more: int | None = None
    """How many more calls wait than are listed (an approval without ``call_ids`` decides them too)."""


class StepView(_Reply):
    """A step that started, as shown while the run runs (status, attempts, latency, a preview of its result)."""

    step_id: str
    tool: str
    status: str


class RunSummary(_Reply):
    """A run in a listing (no result)."""

    id: str
    status: RunStatus
    stage: str | None = None
    """``validating``, ``preparing``, ``planning``, ``awaiting_approval``, ``executing``, ``answering``, ``done``,
    ``canceled``."""
    progress: RunProgress | None = None
    errors: list[ErrorInfo] = Field(default_factory=list)
    created_at: str | None = None
    updated_at: str | None = None
    mode: RunMode | None = None


class RunView(RunSummary):
    """``GET /api/runs/{id}``: 202 while pending or running, 200 once finished (then ``result`` is set)."""

    result: RunResult | None = None
    owner: str | None = None
    """The owning caller's display name."""
    awaiting_approval: AwaitingApproval | None = None
    steps: list[StepView] | None = None
    """The steps so far, while the run runs (the finished run's steps are in ``result.steps``)."""


class RunList(_Reply):
    """One page of runs, newest first; pass ``continuation`` back for the next page (null: the last page)."""

    runs: list[RunSummary]
    continuation: str | None


class CancelReply(_Reply):
    id: str
    status: Literal["canceling"]


class ApprovalRequest(BaseModel):
    """``POST /api/runs/{id}/approve``: decide the calls named in ``call_ids`` (absent: every call waiting)."""

    model_config = ConfigDict(extra="forbid")

    approved: bool
    reason: str = Field("", max_length=2000)
    call_ids: list[Annotated[str, Field(min_length=1, max_length=MAX_CALL_ID_CHARS)]] | None = Field(
        None, min_length=1, max_length=MAX_APPROVAL_CALL_IDS)


class ApprovalReply(_Reply):
    id: str
    approved: bool
    call_ids: list[str]


class ToolSummary(_Reply):
    name: str
    description: str
    tags: list[str]
    source: str
    side_effects: bool


class ToolList(_Reply):
    """``GET /api/tools``: the catalog's tools (``GET /api/tools/{name}`` has the argument schema) and sources."""

    version: str
    count: int
    tools: list[ToolSummary]
    sources: list[dict[str, Any]]


class SearchFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: str | list[str] | None = None
    """Only tools with one of these tags."""
    source: str | list[str] | None = None
    """Only tools from these sources (``demo``, ``file``, ``openapi``, ``mcp``, ``python``)."""


class SearchRequestBody(BaseModel):
    """``POST /api/tools/search``: BM25 and embeddings over the catalog, fused."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4000, pattern=r"\S")
    k: int = Field(10, ge=1, le=100)
    """How many hits (at most WEFT_SEARCH_MAX_K, default 100)."""
    filters: SearchFilters | None = None
    min_score: float | None = Field(None, ge=0, le=1)


class SearchHit(_Reply):
    name: str
    score: float
    matched_terms: list[str]
    retrievers: list[str]
    clause: str | None = None


class SearchReply(_Reply):
    query: str
    results: list[SearchHit]
    took_ms: float


class ReloadReply(_Reply):
    version: str
    count: int
    sources: list[dict[str, Any]]


class RemovedSource(_Reply):
    """``DELETE /api/tools/sources/{id}``: the source and the tools that left the catalog."""

    id: str
    removed_tools: list[str]


class Health(_Reply):
    status: Literal["ok"]
    version: str
    uptime_s: float


class ReadyCheck(_Reply):
    name: str
    status: str
    latency_ms: float
    detail: str | None = None


class Ready(_Reply):
    status: Literal["ready", "not_ready"]
    checks: list[ReadyCheck]


class AuditList(_Reply):
    """Audit records, newest first (see :class:`shared.identity.audit.AuditRecord`)."""

    records: list[dict[str, Any]]
