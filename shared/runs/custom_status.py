"""What a running orchestration shows: its custom status (stage, counts, the latest steps, the calls awaiting
approval), read back by ``GET /api/runs/{id}``, and kept within what Durable accepts.

Pure: pydantic and the models only, so the orchestrators can import it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from shared.models import RunMode, StepRecord
from shared.runs.contracts import Contract
from shared.runs.names import Stage

__all__ = [
    "AWAITING_SHOWN",
    "STATUS_MAX_CHARS",
    "STATUS_MAX_STEPS",
    "CustomStatus",
    "PendingApproval",
    "RecentSteps",
    "StepSummary",
    "fit_status",
    "step_summaries",
    "summary_chars",
]


AWAITING_SHOWN = 20
"""Most calls awaiting approval a custom status lists (and fewer when they do not fit in :data:`STATUS_MAX_CHARS`)."""

STATUS_MAX_STEPS = 50
"""Most step summaries a custom status carries (and fewer when they do not fit in :data:`STATUS_MAX_CHARS`); every
orchestrator episode writes them, so each one costs on every step of a long plan."""

STATUS_MAX_CHARS = 8000
"""Most characters of a custom status as JSON (measured with every non-ASCII character escaped, so on the safe
side): Durable refuses one of more than 16 KB of UTF-16 text (about 8,700 characters), which 100 step summaries of
long step and tool names, or 20 approvals' argument previews, exceed."""


def fit_status(dumped: dict[str, Any]) -> dict[str, Any]:
    """A custom status (as JSON data) within :data:`STATUS_MAX_CHARS`: calls awaiting approval take at most half
    (the last ones are left out, counted in ``awaiting_more``), then the oldest step summaries are left out, and
    if it still does not fit, ``tools`` lists only the tools of the calls shown."""
    excess = len(json.dumps(dumped)) - STATUS_MAX_CHARS
    if excess <= 0:
        return dumped
    fitted = dict(dumped)
    awaiting = list(fitted.get("awaiting") or [])
    sizes = [len(json.dumps(entry)) + 2 for entry in awaiting]
    while len(awaiting) > 1 and sum(sizes) > STATUS_MAX_CHARS // 2:
        awaiting.pop()
        excess -= sizes.pop()
    steps = list(fitted.get("steps") or [])
    while steps and excess > 0:
        excess -= len(json.dumps(steps.pop(0))) + 2
    while len(awaiting) > 1 and excess > 0:
        awaiting.pop()
        excess -= sizes.pop()
    if "steps" in fitted:
        fitted["steps"] = steps
    if len(awaiting) < len(fitted.get("awaiting") or []):
        fitted["awaiting_more"] = fitted.get("awaiting_more", 0) + len(fitted["awaiting"]) - len(awaiting)
        fitted["awaiting"] = awaiting
    if excess > 0 and fitted.get("tools"):  # hundreds of distinct tools awaiting: those of the calls shown
        fitted["tools"] = sorted({entry["tool"] for entry in awaiting if isinstance(entry, dict) and "tool" in entry})
    return fitted


class StepSummary(Contract):
    """One step as a running run shows it: no arguments or results (``GET .../steps/{id}/result`` has those)."""

    step_id: str
    tool: str
    status: str
    attempts: int = 0
    latency_ms: float | None = None
    error: str | None = None
    """The error code of a failed or skipped step."""

    @classmethod
    def of(cls, record: StepRecord) -> StepSummary:
        return cls(step_id=record.step_id, tool=record.tool, status=record.status.value, attempts=record.attempts,
                   latency_ms=record.latency_ms, error=record.error.code if record.error else None)


def step_summaries(records: list[StepRecord]) -> list[StepSummary]:
    """The latest :data:`STATUS_MAX_STEPS` records that started, as summaries."""
    started = [record for record in records if record.status.value != "pending"]
    return [StepSummary.of(record) for record in started[-STATUS_MAX_STEPS:]]


class PendingApproval(Contract):
    """One tool call waiting for a human's approval, as ``GET /api/runs/{id}`` shows it."""

    call_id: str
    tool: str
    args_preview: str
    """The arguments as canonical JSON, cut to 500 characters: what the approver decides on (the hash names them)."""
    args_sha256: str


class CustomStatus(Contract):
    """What an orchestrator shows while it runs (Durable's custom status), read back by ``GET /api/runs/{id}``.

    Each stage sets the fields it knows; the rest are left out of the JSON (kept well under Durable's 16 KB).
    """

    stage: Stage | str | None = None
    mode: RunMode | None = None
    status: str | None = None
    """The run's status (``done`` stage)."""
    tools: list[str] | None = None
    """Tools awaiting approval."""
    awaiting: list[PendingApproval] | None = None
    """The tool calls awaiting approval (the first :data:`AWAITING_SHOWN`): tool, argument preview, call id."""
    awaiting_more: int | None = None
    """How many more calls await approval than are shown (they are shown once these are decided)."""
    expires_at: str | None = None
    """When the approval times out (ISO 8601)."""
    sub_run: str | None = None
    """The sub-run a task is executing (its approvals and steps are shown through the task)."""
    turn: int | None = None
    round: int | None = None
    done: int | None = None
    total: int | None = None
    failed: int | None = None
    skipped: int | None = None
    elapsed_ms: float | None = None
    steps: list[StepSummary] | None = None
    """The steps that started so far (the latest :data:`STATUS_MAX_STEPS`): what ``GET /api/runs/{id}`` shows while
    the run runs."""

    def dump(self) -> dict[str, Any]:
        return fit_status(self.model_dump(mode="json", exclude_none=True))

    @property
    def progress(self) -> dict[str, Any] | None:
        """``{done, total, failed, elapsed_ms}`` when the status counts steps."""
        if self.done is None or self.total is None:
            return None
        return {"done": self.done, "total": self.total, "failed": self.failed or 0, "skipped": self.skipped or 0,
                "elapsed_ms": self.elapsed_ms}


class RecentSteps:
    """The latest :data:`STATUS_MAX_STEPS` step summaries (as JSON data, one per step, latest last) and the characters
    they take in a status's JSON, so a status is measured without encoding it on every episode."""

    def __init__(self, entries: Iterable[dict[str, Any]] = ()) -> None:
        self._entries: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.chars = 0
        for entry in entries:
            self.add(entry)

    def add(self, summary: dict[str, Any]) -> None:
        """Keep ``summary`` as its step's latest; the oldest step beyond :data:`STATUS_MAX_STEPS` is dropped."""
        earlier = self._entries.pop(summary["step_id"], None)
        if earlier is not None:
            self.chars -= summary_chars(earlier)
        self._entries[summary["step_id"]] = summary
        self.chars += summary_chars(summary)
        if len(self._entries) > STATUS_MAX_STEPS:
            self.chars -= summary_chars(self._entries.popitem(last=False)[1])

    def entries(self) -> list[dict[str, Any]]:
        return list(self._entries.values())

    def fits(self) -> bool:
        """Whether a status of these summaries, without approvals, is within :data:`STATUS_MAX_CHARS`."""
        return self.chars <= STATUS_MAX_CHARS - _STATUS_OTHER_CHARS

    def __bool__(self) -> bool:
        return bool(self._entries)


_STATUS_OTHER_CHARS = 400
"""At most the characters of an executing plan's custom status besides its step summaries and approvals."""


def summary_chars(summary: Mapping[str, Any]) -> int:
    """The characters ``summary`` takes in the status's JSON, as the SDK encodes it, with its comma: encoded once when
    the step finishes (an upper-bound estimate of 140 + ids made every long plan's status look too large and
    re-encoded it whole, ~17 % of a 1,000-step chain's replay time)."""
    return len(json.dumps(summary)) + 2
