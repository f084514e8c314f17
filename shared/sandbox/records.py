"""What a sandbox run returns: results, tool-call records and replay steps, all JSON-serialisable.

These are the contract with the orchestrator, which keeps :class:`RecordedCall` and :class:`ReplayStep` in Durable
history, so every type round-trips through ``to_dict``/``from_dict`` (plain JSON data) unchanged. A recorded call has
that one JSON form everywhere: in history, in the job sent to a worker, and as
``shared.runs.contracts.RecordedCallData``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["CodeError", "CodeResult", "PendingCall", "RecordedCall", "ReplayStep"]


@dataclass(frozen=True)
class CodeError:
    """An uncaught error in the code, formatted for the LLM that wrote it."""

    type: str
    """Exception class name, e.g. ``"ZeroDivisionError"``."""
    message: str
    """``str(exception)``."""
    traceback: str
    """Traceback restricted to the code's own frames, with source lines."""

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CodeError:
        return cls(type=str(data["type"]), message=str(data["message"]), traceback=str(data["traceback"]))


@dataclass(frozen=True)
class PendingCall:
    """A tool call the code is waiting for. ``call_id`` is deterministic: ``c1``, ``c2``… in the order made."""

    call_id: str
    tool: str
    args: list[Any] = field(default_factory=list)
    """Positional arguments as JSON values."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments as JSON values."""

    def to_dict(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "tool": self.tool, "args": list(self.args), "kwargs": dict(self.kwargs)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingCall:
        return cls(
            call_id=str(data["call_id"]), tool=str(data["tool"]), args=list(data.get("args") or []),
            kwargs=dict(data.get("kwargs") or {}),
        )


@dataclass(frozen=True)
class RecordedCall:
    """A tool call with its outcome: ``result`` when it succeeded, ``error`` (a message) when it failed."""

    call_id: str
    tool: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    """The tool's result as JSON data (None when it failed)."""
    error: str | None = None
    """Why the call failed; the code sees it as ``ToolError``. None when it succeeded."""

    @classmethod
    def succeeded(cls, call: PendingCall, result: Any) -> RecordedCall:
        """Record ``call`` as having returned ``result`` (JSON data)."""
        return cls(call.call_id, call.tool, list(call.args), dict(call.kwargs), result=result)

    @classmethod
    def failed(cls, call: PendingCall, error: str) -> RecordedCall:
        """Record ``call`` as having failed with ``error``."""
        return cls(call.call_id, call.tool, list(call.args), dict(call.kwargs), error=error)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id, "tool": self.tool, "args": list(self.args), "kwargs": dict(self.kwargs),
            "result": self.result, "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecordedCall:
        error = data.get("error")
        return cls(
            call_id=str(data["call_id"]), tool=str(data["tool"]), args=list(data.get("args") or []),
            kwargs=dict(data.get("kwargs") or {}), result=data.get("result"),
            error=None if error is None else str(error),
        )


@dataclass(frozen=True)
class CodeResult:
    """The outcome of an inline run.

    ``result`` is the value of the code's final expression statement, or else of its variable ``result`` (as JSON
    data; values JSON cannot hold become their ``repr``). When the code raised, ``error`` says how and ``result`` is
    None — violations and limits are raised as exceptions instead.
    """

    result: Any = None
    stdout: str = ""
    tool_calls: tuple[RecordedCall, ...] = ()
    """Every tool call the code made, in the order it made them, with its outcome."""
    error: CodeError | None = None

    @property
    def ok(self) -> bool:
        """Whether the code ran to the end without an uncaught error."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result, "stdout": self.stdout, "tool_calls": [c.to_dict() for c in self.tool_calls],
            "error": None if self.error is None else self.error.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CodeResult:
        error = data.get("error")
        return cls(
            result=data.get("result"), stdout=str(data.get("stdout") or ""),
            tool_calls=tuple(RecordedCall.from_dict(c) for c in data.get("tool_calls") or ()),
            error=None if error is None else CodeError.from_dict(error),
        )


@dataclass(frozen=True)
class ReplayStep:
    """One replay step: the code either finished or is waiting for tool calls that have no recorded result.

    ``finished``: ``result``/``stdout``/``error`` as in :class:`CodeResult`. ``pending``: ``calls`` lists every call
    the code was waiting on when it could go no further (all ten of an ``asyncio.gather`` of ten); record a result
    or an error for each, append them to the record, and run the next step.
    """

    status: Literal["finished", "pending"]
    result: Any = None
    stdout: str = ""
    error: CodeError | None = None
    calls: tuple[PendingCall, ...] = ()

    @classmethod
    def finished(cls, result: Any, stdout: str, error: CodeError | None = None) -> ReplayStep:
        return cls(status="finished", result=result, stdout=stdout, error=error)

    @classmethod
    def pending(cls, calls: Sequence[PendingCall]) -> ReplayStep:
        return cls(status="pending", calls=tuple(calls))

    @property
    def done(self) -> bool:
        return self.status == "finished"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status, "result": self.result, "stdout": self.stdout,
            "error": None if self.error is None else self.error.to_dict(),
            "calls": [c.to_dict() for c in self.calls],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplayStep:
        status = data["status"]
        if status not in ("finished", "pending"):
            raise ValueError(f"unknown replay step status {status!r}")
        error = data.get("error")
        return cls(
            status=status, result=data.get("result"), stdout=str(data.get("stdout") or ""),
            error=None if error is None else CodeError.from_dict(error),
            calls=tuple(PendingCall.from_dict(c) for c in data.get("calls") or ()),
        )
