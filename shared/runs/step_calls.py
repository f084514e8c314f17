"""Pure helpers shared by the run orchestrators and the ``call_tool`` activity.

Durable passes only a message string when an activity raises, so a retryable tool failure travels as an exception
whose message carries the :class:`~shared.models.ErrorInfo` JSON between markers; the orchestrator reads it back
after the last retry. A call rejected by an open circuit is the exception: Durable's retry intervals (500 ms
doubling) would spend every attempt within the breaker's cool-down, so ``call_tool`` returns a :class:`CircuitWait`
instead and the orchestrator waits for the circuit on a durable timer. Everything here is deterministic: it runs
inside orchestrators too.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.models import ErrorInfo, RetryPolicy, ToolCall, ToolResult

__all__ = [
    "ERROR_END",
    "ERROR_START",
    "CallApproval",
    "CircuitWait",
    "RetryableActivityError",
    "RetryableToolError",
    "StepCall",
    "StepOutcome",
    "error_from_failure",
    "offloaded",
    "offloaded_ref",
]

ERROR_START = "<<weft-error>>"
ERROR_END = "<</weft-error>>"
_ERROR = re.compile(re.escape(ERROR_START) + r"(.*?)" + re.escape(ERROR_END), re.DOTALL)
_BLOB_KEY = "$weft_payload"


class RetryableActivityError(Exception):
    """Raised by an activity so Durable retries it; the message carries the error JSON (:func:`error_from_failure`
    reads it back after the last attempt)."""

    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(f"{ERROR_START}{error.model_dump_json()}{ERROR_END} {error.message}")
        self.error = error


class RetryableToolError(RetryableActivityError):
    """Raised by the ``call_tool`` activity so Durable retries the call."""


def error_from_failure(text: str) -> ErrorInfo:
    """The :class:`ErrorInfo` inside a failed activity's message, or a generic one built from the text."""
    match = _ERROR.search(text or "")
    if match:
        try:
            return ErrorInfo.model_validate_json(match.group(1))
        except ValueError:
            pass
    first_line = (text or "activity failed").strip().splitlines()[0][:2000]
    return ErrorInfo(code="activity_failed", message=first_line, retryable=False)


class CallApproval(BaseModel):
    """A human's approval of one tool call, as the orchestrator recorded it from the ``approval`` event."""

    model_config = ConfigDict(extra="forbid")

    call_id: str
    """The step id (plan) or call id (code) approved."""
    args_sha256: str
    """The arguments approved (their hash): an approval holds for exactly these arguments."""
    approved_by: str = ""
    """Who approved (display name of the approving caller)."""
    decided_at: str = ""
    """When (ISO 8601, orchestration time)."""


class StepCall(BaseModel):
    """Input of the ``call_tool`` activity: the call plus what the activity must finish before running it."""

    model_config = ConfigDict(extra="forbid")

    call: ToolCall
    """The tool call; arguments resolved except references into offloaded results."""
    offloaded: dict[str, str] = Field(default_factory=dict)
    """Step id → payload reference, for ``$ref``s the orchestrator could not resolve (results stored in Blob)."""
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    """The tool's retry policy (applied by the orchestrator through Durable retries)."""
    approval: CallApproval | None = None
    """The approval of this very call, for a tool marked ``requires_approval``: ``call_tool`` refuses to run such a
    tool without one that names the call and its arguments."""


class CircuitWait(BaseModel):
    """What ``call_tool`` returns instead of a result when the tool's circuit is open: the tool was not called, and
    another attempt is worth making after ``retry_after_s``."""

    model_config = ConfigDict(extra="forbid")

    circuit_open: ErrorInfo
    """The ``circuit_open`` error, reported as the step's error if no attempt is left."""
    retry_after_s: float = Field(ge=0)
    """Seconds until the breaker lets a call through (the rest of its cool-down)."""

    @classmethod
    def from_output(cls, output: Any) -> CircuitWait | None:
        """The wait, if ``output`` (a ``call_tool`` result) is one; None for a :class:`~shared.models.ToolResult`."""
        if isinstance(output, dict) and "circuit_open" in output:
            return cls.model_validate(output)
        return None


class StepOutcome(BaseModel):
    """What the orchestrator learned about one call: its result and how many attempts it took."""

    step_id: str
    result: ToolResult
    attempts: int = 1


def offloaded(ref: str) -> dict[str, str]:
    """The placeholder an orchestrator keeps in place of a result stored outside the history."""
    return {_BLOB_KEY: ref}


def offloaded_ref(value: Any) -> str | None:
    """The payload reference if ``value`` is an :func:`offloaded` placeholder."""
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get(_BLOB_KEY), str):
        return value[_BLOB_KEY]
    return None


def json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())
