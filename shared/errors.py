"""One exception tree for Weft; who is at fault decides the leaf, and retryability is decided here only.

    WeftError
    ├── InvalidRequest            the caller sent something wrong (HTTP 400; ``field`` names it)
    │   ├── PlanInvalid           a plan that cannot run (unknown tool, cycle, dangling $ref)
    │   └── ToolArgumentsInvalid  arguments that do not match a tool's schema
    ├── Unauthenticated           no caller could be established: missing, malformed or invalid credentials (HTTP 401)
    ├── Forbidden                 the caller lacks the role the action needs (HTTP 403; the message names the role)
    ├── NotFound                  no such resource for this caller (HTTP 404; another caller's run is not found either)
    │   └── RunNotFound           no run with that id (for this caller)
    ├── Conflict                  the request contradicts stored state, e.g. an idempotency key bound to another body
    ├── RateLimited               the caller's request rate or concurrent-run quota is spent (HTTP 429, Retry-After)
    ├── ToolNotFound              a name that is not in the catalog (HTTP 404 on lookups)
    ├── ToolFailed                the tool itself raised or returned an error
    │   └── ResultTooLarge        the result could not travel inline and could not be stored
    ├── ToolTimeout               the tool did not answer within its timeout
    ├── CircuitOpen               the tool's circuit breaker is open
    ├── ExecutionUncertain        a crash interrupted a non-idempotent call: it may have run, so it is not run again
    ├── JournalMismatch           a restarted inline run made another call than its journal recorded
    ├── SandboxViolation          code broke the sandbox policy (never retried)
    ├── SandboxLimitExceeded      code hit a resource limit (never retried)
    ├── ModelBehaviorError        the LLM returned something unusable
    ├── UpstreamUnavailable       a dependency is down, throttling or timing out (retried)
    │   ├── CancelCheckUnavailable  a side-effecting call's cancel mark could not be read: not run (retried)
    │   └── SandboxBusy           every local sandbox slot stayed taken for the queue wait (retried)
    ├── NotConfigured             a feature needs configuration that is missing (HTTP 503)
    ├── ApprovalDenied            a human refused the tools a run needs
    ├── ApprovalTimeout           nobody decided on the approval in time
    ├── CodeFailed                the code raised (its error and traceback are in the message)
    ├── TurnLimitExceeded         a task had no answer after its planner turns
    ├── StepFailed / StepSkipped  a plan step failed, or was not run because of another step
    ├── ActivityFailed            a Durable activity failed without a Weft error in its message
    └── RunCanceled, OrchestrationFailed   how a run that did not end on its own is reported

The codes of the last group are reported inside run results (``ErrorInfo.code``) rather than raised; they are
classes so every code is written once, as ``<Class>.code``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "LISTED_NAMES",
    "QUOTED_CHARS",
    "ActivityFailed",
    "ApprovalDenied",
    "ApprovalRequired",
    "ApprovalTimeout",
    "CancelCheckUnavailable",
    "CircuitOpen",
    "CodeFailed",
    "Conflict",
    "ExecutionUncertain",
    "Forbidden",
    "InvalidRequest",
    "JournalMismatch",
    "ModelBehaviorError",
    "NotConfigured",
    "NotFound",
    "OrchestrationFailed",
    "PlanInvalid",
    "RateLimited",
    "ResultTooLarge",
    "RunCanceled",
    "RunNotFound",
    "RunTimedOut",
    "SandboxBusy",
    "SandboxLimitExceeded",
    "SandboxViolation",
    "StepFailed",
    "StepSkipped",
    "ToolArgumentsInvalid",
    "ToolFailed",
    "ToolNotFound",
    "ToolTimeout",
    "TurnLimitExceeded",
    "Unauthenticated",
    "UpstreamUnavailable",
    "WeftError",
    "is_retryable",
    "quoted",
    "quoted_list",
]

QUOTED_CHARS = 60
"""How much of a caller's input an error message quotes: enough to recognise it, never the whole of a large one."""


class WeftError(Exception):
    """Root of every error Weft raises on purpose.

    ``code`` is a stable machine-readable name; ``field`` names the offending input when there is one.
    """

    code = "weft_error"
    http_status = 500
    retryable = False

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, str | None]:
        """The JSON error body returned to callers: ``{"code", "message", "field"}``."""
        return {"code": self.code, "message": self.message, "field": self.field}


class InvalidRequest(WeftError):
    code = "invalid_request"
    http_status = 400


class PlanInvalid(InvalidRequest):
    code = "plan_invalid"


class ToolArgumentsInvalid(InvalidRequest):
    code = "tool_arguments_invalid"


class Unauthenticated(WeftError):
    """No caller: the credentials are missing, malformed, expired or not trusted (the message says which)."""

    code = "unauthenticated"
    http_status = 401


class Forbidden(WeftError):
    """A known caller without the role (or the relationship to the resource) that the action needs."""

    code = "forbidden"
    http_status = 403


class NotFound(WeftError):
    """No such resource for this caller; used alike for missing resources and other callers' ones."""

    code = "not_found"
    http_status = 404


class Conflict(WeftError):
    code = "conflict"
    http_status = 409


class RateLimited(WeftError):
    """A per-caller quota is spent; ``retry_after_s`` becomes the ``Retry-After`` header."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after_s: float, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after_s = retry_after_s


class ToolNotFound(WeftError):
    code = "tool_not_found"
    http_status = 404


class ToolFailed(WeftError):
    code = "tool_failed"
    http_status = 502
    retryable = True


class ToolTimeout(WeftError):
    code = "tool_timeout"
    http_status = 504
    retryable = True


class CircuitOpen(WeftError):
    code = "circuit_open"
    http_status = 503
    retryable = True


class ExecutionUncertain(WeftError):
    """An earlier delivery of a non-idempotent tool call began and never reported (a crash): the tool may already
    have executed, so it is not executed again (the tool opts in to repeats with ``idempotent: true``)."""

    code = "execution_uncertain"
    http_status = 409


class JournalMismatch(WeftError):
    """A restarted inline run made another call than its journal recorded at that sequence: the code is not
    deterministic, so the journalled calls cannot be replayed and the run stops rather than execute anything again."""

    code = "journal_mismatch"
    http_status = 409


class SandboxViolation(WeftError):
    code = "sandbox_violation"
    http_status = 400


class SandboxLimitExceeded(WeftError):
    code = "sandbox_limit_exceeded"
    http_status = 400


class ModelBehaviorError(WeftError):
    code = "model_behavior_error"
    http_status = 502


class UpstreamUnavailable(WeftError):
    code = "upstream_unavailable"
    http_status = 503
    retryable = True


class CancelCheckUnavailable(UpstreamUnavailable):
    """Whether the call's run was canceled could not be read (the journal's storage is down): the call did not run."""

    code = "cancel_check_unavailable"


class SandboxBusy(UpstreamUnavailable):
    """The process already runs as many local sandbox workers as it may; nothing of this run has started."""

    code = "sandbox_busy"


class NotConfigured(WeftError):
    code = "not_configured"
    http_status = 503


class RunNotFound(NotFound):
    code = "run_not_found"


class ResultTooLarge(ToolFailed):
    """An inline result too large to pass on that payload storage did not keep; repeating the call cannot help."""

    code = "result_too_large"
    retryable = False


class ApprovalDenied(WeftError):
    code = "approval_denied"
    http_status = 403


class ApprovalRequired(WeftError):
    """A ``requires_approval`` tool was about to run without a human's approval of that call: it did not run."""

    code = "approval_required"
    http_status = 403


class ApprovalTimeout(WeftError):
    code = "approval_timeout"


class CodeFailed(WeftError):
    code = "code_error"


class TurnLimitExceeded(WeftError):
    code = "max_turns"


class StepFailed(WeftError):
    code = "step_failed"


class StepSkipped(WeftError):
    code = "skipped"


class ActivityFailed(WeftError):
    code = "activity_failed"


class RunTimedOut(WeftError):
    """The run's own deadline (``options.timeout_s``) passed: calls still in flight were abandoned."""

    code = "timed_out"
    http_status = 504


class RunCanceled(WeftError):
    code = "canceled"


class OrchestrationFailed(WeftError):
    code = "orchestration_failed"


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed attempt is worth repeating: the single place this is decided."""
    if isinstance(exc, WeftError):
        return exc.retryable
    return isinstance(exc, TimeoutError | ConnectionError)


def quoted(value: str) -> str:
    """``value`` quoted for an error message (``repr``), cut to its first :data:`QUOTED_CHARS` characters with ``…``
    when longer: errors quote what the caller sent, and the caller may have sent megabytes."""
    return repr(value) if len(value) <= QUOTED_CHARS else repr(value[:QUOTED_CHARS]) + "…"


LISTED_NAMES = 20
"""How many names an error message lists (:func:`quoted_list`) before counting the rest."""


def quoted_list(names: Sequence[str], limit: int = LISTED_NAMES) -> str:
    """The first ``limit`` of ``names``, each :func:`quoted`, then ``and N more``: a message may list a tool's
    parameters or a result's keys, and there may be 100,000 of them."""
    listed = ", ".join(quoted(name) for name in names[:limit])
    return listed + (f", and {len(names) - limit} more" if len(names) > limit else "")
