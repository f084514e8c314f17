"""Results: what tool calls and runs produce, as DTOs stored in Durable history and returned over HTTP.

A tool call answers a :class:`ToolResult` (a failure is a result with ``ok=False`` and an :class:`ErrorInfo`, never an
exception); a run answers a :class:`RunResult` with one :class:`StepRecord` per tool call. The request side (and a
re-export of everything here) is :mod:`shared.models`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import ToolFailed, WeftError

__all__ = [
    "ErrorInfo",
    "RunMode",
    "RunResult",
    "RunStatus",
    "StepRecord",
    "StepStatus",
    "TokenUsage",
    "ToolResult",
]

RunMode = Literal["plan", "code", "task"]
"""How a run is given: a plan, code or a task (``RunRequest.mode``, echoed in ``RunResult.mode``)."""


class ErrorInfo(BaseModel):
    """An error as callers and LLMs see it."""

    code: str
    """Stable machine-readable name (``tool_failed``, ``tool_arguments_invalid``, ...)."""
    message: str
    """What went wrong, written so the caller (or an LLM) can fix it."""
    field: str | None = None
    """The offending input, e.g. ``args.city`` or ``plan.steps[2].tool``."""
    retryable: bool = False
    """Whether repeating the same call may succeed."""

    @classmethod
    def from_exception(cls, exc: BaseException, *, retryable: bool | None = None) -> ErrorInfo:
        """From a :class:`~shared.errors.WeftError` (its code and field) or any exception (``code="tool_failed"``)."""
        if isinstance(exc, WeftError):
            return cls(
                code=exc.code,
                message=exc.message,
                field=exc.field,
                retryable=exc.retryable if retryable is None else retryable,
            )
        message = str(exc) or type(exc).__name__
        return cls(code=ToolFailed.code, message=f"{type(exc).__name__}: {message}", retryable=bool(retryable))

    @classmethod
    def of(cls, kind: type[WeftError], message: str, *, field: str | None = None) -> ErrorInfo:
        """An error of ``kind`` (its code and retryability) without raising it."""
        return cls(code=kind.code, message=message, field=field, retryable=kind.retryable)


class ToolResult(BaseModel):
    """Output of one tool call. Tool-level failures are results with ``ok=False``, never exceptions."""

    ok: bool
    """Whether the tool returned a value."""
    value: Any = None
    """The JSON result; when ``truncated``, a string holding the start of its JSON text."""
    error: ErrorInfo | None = None
    """Why the call failed (``ok=False``)."""
    latency_ms: float = 0.0
    """Time spent in the executor for this attempt."""
    size_bytes: int = 0
    """Size of the full result's JSON text in UTF-8 bytes."""
    truncated: bool = False
    """The result was larger than the limit; ``value`` is a prefix of its JSON text."""
    blob_ref: str | None = None
    """Where the full result was stored when it was too large to travel inline."""
    redelivered: bool = False
    """An earlier delivery of this very call began and never reported (a crash): the tool may have executed more
    than once (an idempotent tool is run again) or, non-idempotent, was not run again (``execution_uncertain``)."""

    def recorded_value(self, preview_bytes: int | None = None) -> Any:
        """What a step record shows of this result: the value or, for a result stored in payload storage, its
        reference, full size and a preview (the first ``preview_bytes`` of it, when given)."""
        if not self.blob_ref:
            return self.value
        preview = self.value
        if preview_bytes is not None and isinstance(preview, str):
            preview = preview[:preview_bytes]
        return {"blob_ref": self.blob_ref, "size_bytes": self.size_bytes, "preview": preview}


class StepStatus(StrEnum):
    """Lifecycle of one step."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class StepRecord(BaseModel):
    """What happened to one step, as reported in the run result."""

    step_id: str
    """The step's id."""
    tool: str
    """The tool it called."""
    status: StepStatus = StepStatus.PENDING
    """Where the step is in its lifecycle."""
    attempts: int = 0
    """Attempts made (a retry after a reported failure is an attempt; a crash's redelivery is not: see
    ``redelivered``)."""
    redelivered: bool = False
    """A crash interrupted an execution of this call that never reported back, so a second execution cannot be
    excluded: an idempotent tool ran again, a non-idempotent one did not (its error is ``execution_uncertain``)."""
    latency_ms: float = 0.0
    """Time of the last attempt."""
    args_hash: str = ""
    """sha256 of the canonical JSON of the resolved arguments (:func:`~shared.models.hash_args`); args aren't stored."""
    result: Any = None
    """The result value (or its preview when truncated)."""
    error: ErrorInfo | None = None
    """The last error, for failed or skipped steps."""
    started_at: datetime | None = None
    """When the step was scheduled (orchestration time)."""
    finished_at: datetime | None = None
    """When its result arrived (orchestration time)."""


class RunStatus(StrEnum):
    """Lifecycle of a run."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    CANCELED = "canceled"


class TokenUsage(BaseModel):
    """LLM tokens spent by one model call, or summed over a run (``a + b``, ``sum(usages)``)."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    """Input tokens, including cached ones."""
    completion_tokens: int = 0
    """Output tokens."""
    cached_tokens: int = 0
    """Input tokens served from the prompt cache (part of ``prompt_tokens``)."""

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        if not isinstance(other, TokenUsage):
            return NotImplemented
        return TokenUsage(prompt_tokens=self.prompt_tokens + other.prompt_tokens,
                          completion_tokens=self.completion_tokens + other.completion_tokens,
                          cached_tokens=self.cached_tokens + other.cached_tokens)

    def __radd__(self, other: object) -> TokenUsage:
        if other == 0:  # ``sum()`` starts from the int 0
            return self
        return NotImplemented


class RunResult(BaseModel):
    """The orchestration's output."""

    run_id: str
    """The run's id (orchestration instance id)."""
    mode: RunMode
    """The request's mode."""
    status: RunStatus
    """How the run ended (or where it is)."""
    steps: list[StepRecord] = Field(default_factory=list)
    """One record per tool call."""
    output: Any = None
    """The answer: the final step results (plan), the code's return value (code) or the LLM's answer (task)."""
    errors: list[ErrorInfo] = Field(default_factory=list)
    """Run-level errors (invalid plan, timeout, failed steps)."""
    usage: TokenUsage = Field(default_factory=TokenUsage)
    """LLM tokens spent."""
    elapsed_ms: float = 0.0
    """Orchestration time from start to finish."""
