"""What the orchestrators and their activities pass each other, as typed models.

Each activity's input and output and the approval decision (the custom status the orchestrators set is
:mod:`shared.runs.custom_status`). The field names are the keys the same data had as plain dicts, so inputs and
outputs recorded in Durable histories before these models existed still validate (models that travel *into* history
ignore unknown keys for the same reason). Plan mode's ``call_tool`` contract is
:class:`~shared.runs.step_calls.StepCall` / :class:`~shared.models.ToolResult` /
:class:`~shared.runs.step_calls.CircuitWait`; sub-runs take a :class:`~shared.models.RunRequest` and answer a
:class:`~shared.models.RunResult`.

Pure: pydantic and the models only, so the orchestrators can import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.models import (
    ErrorInfo,
    Plan,
    RetryPolicy,
    RunOptions,
    RunResult,
    RunStatus,
    StepRecord,
    StepStatus,
    TokenUsage,
    ToolSpec,
)

if TYPE_CHECKING:
    from shared.runs.custom_status import PendingApproval

__all__ = [
    "SANDBOX_RETRY_BEFORE_SETTING",
    "STEP_RECORDS_RETRY",
    "ApprovalDecision",
    "ArchivedStepRecords",
    "CodeErrorData",
    "CodeOutcome",
    "CodeRunRequest",
    "CodeStepRequest",
    "Contract",
    "FinishedRun",
    "LlmAnswerReply",
    "LlmAnswerRequest",
    "LlmPlanReply",
    "LlmPlanRequest",
    "PendingCallData",
    "PendingEntry",
    "PlanAdvance",
    "PlanFinish",
    "PlanProgress",
    "PlanProgressRefs",
    "PlanWindow",
    "PlannerReply",
    "PrepareCodeRequest",
    "PrepareTaskRequest",
    "PreparedCode",
    "PreparedPlan",
    "PreparedTask",
    "RecordedCallData",
    "Repair",
    "SearchToolsRequest",
    "StepRecordsArchive",
    "TaskStyle",
    "TranscriptTurn",
]

TaskStyle = Literal["plan", "code"]


class Contract(BaseModel):
    """Ignores keys it does not know: a history written by a newer or older version still validates."""

    model_config = ConfigDict(extra="ignore")

    def dump(self) -> dict[str, Any]:
        """JSON data for an activity input or output."""
        return self.model_dump(mode="json")


# ----------------------------------------------------------------------------------------------------------- plan


class PreparedPlan(Contract):
    """What a plan run takes from the runtime when it starts: added to the orchestrator's input by the trigger, or
    the output of ``prepare_plan`` (input: the :class:`~shared.models.Plan`) for a task's sub-runs."""

    specs: dict[str, ToolSpec]
    """The specs of the tools the plan names that the catalog has (unknown names are left out)."""
    max_fan_out: int
    """Calls per ``run_steps`` sub-orchestration (WEFT_MAX_FAN_OUT)."""
    approval_timeout_s: int
    """How long a run waits for approval (WEFT_APPROVAL_TIMEOUT_S)."""
    checkpoint_calls: int = 25
    """Calls per ``continue_as_new`` generation (WEFT_PLAN_CHECKPOINT_CALLS)."""
    window_steps: int = 0
    """A plan of more steps goes on in windows of about this many (WEFT_PLAN_WINDOW_STEPS); 0: never (the runs
    prepared before windows existed carry no value)."""
    finish_plan: bool = False
    """A windowed run ends with ``finish_plan``. False for the runs prepared before that activity existed: their
    histories may already hold ``load_plan_progress`` there, so they end as they began (see docs/operations.md,
    "Upgrades are forward-only")."""


STEP_RECORDS_RETRY = RetryPolicy(first_interval_ms=1000, max_attempts=5)
"""Durable's retry of ``archive_step_records`` and ``load_step_records`` (both idempotent): a transient storage
error must not fail a long run at a checkpoint or at its very end."""


class StepRecordsArchive(Contract):
    """Input of ``archive_step_records``: the records of the steps a plan generation finished, as JSON."""

    run_id: str
    records: dict[str, dict[str, Any]]


class PlanAdvance(Contract):
    """Input of ``advance_plan``: a long plan's generation is over; fold what it finished into the run's progress
    and choose the steps of the next window (see :mod:`shared.runs.plan_window`)."""

    run_id: str
    started: str
    """The run's start (ISO 8601)."""
    now: str
    """The orchestrator's time (ISO 8601): when steps skipped while choosing the window finished."""
    options: RunOptions
    specs: dict[str, ToolSpec]
    window_steps: int
    plan: Plan | None = None
    """The whole plan, the first time (it is stored then; ``plan_ref`` afterwards)."""
    plan_ref: str | None = None
    progress_ref: str | None = None
    """The run's progress stored by the previous ``advance_plan``; None the first time."""
    part: dict[str, Any]
    """The generation's :meth:`~shared.runs.plan_run.PlanRun.checkpoint`, records inline."""


class PlanWindow(Contract):
    """Output of ``advance_plan``: where the plan and the run's progress are stored, and the next generation's part
    of the plan (``steps``, None when every step has finished) with its state."""

    plan_ref: str
    progress_ref: str
    steps: list[dict[str, Any]] | None
    state: dict[str, Any]


class PlanFinish(Contract):
    """Input of ``finish_plan``: a long plan's last generation is over; fold it into the stored progress and answer
    the whole plan's :class:`~shared.models.RunResult` (see :mod:`shared.runs.plan_window`)."""

    run_id: str
    started: str
    """The run's start (ISO 8601)."""
    now: str
    """The orchestrator's time (ISO 8601): when the run ended."""
    options: RunOptions
    specs: dict[str, ToolSpec]
    plan_ref: str
    progress_ref: str
    part: dict[str, Any] | None = None
    """The last generation's :meth:`~shared.runs.plan_run.PlanRun.checkpoint`, records inline; None when
    ``advance_plan`` folded it already."""
    awaiting: list[StepRecord] = []
    """The records of the calls the last generation prepared and never started (awaiting approval when it stopped)."""
    stop: ErrorInfo | None = None
    """What stopped the run (an approval denied or timed out), None when it ran to its end."""
    expired: bool = False
    """The run's deadline passed: the steps not started are skipped."""


class PlanProgressRefs(Contract):
    """Input of ``load_plan_progress``, the end of the windowed runs prepared before ``finish_plan`` existed (see
    :attr:`PreparedPlan.finish_plan`): the stored plan and progress of the run, read back once."""

    run_id: str
    plan_ref: str
    progress_ref: str


class PlanProgress(Contract):
    """Output of ``load_plan_progress``: the whole plan and the run's progress (a
    :meth:`~shared.runs.plan_run.PlanRun.checkpoint` of every window so far)."""

    plan: Plan
    state: dict[str, Any]


class FinishedRun(Contract):
    """A run's :class:`~shared.models.RunResult` as JSON, passed on as it is, with the figures the orchestrator
    shows of it (output of ``finish_plan``: the orchestrator validates no step of a long plan on its replays)."""

    status: RunStatus
    total: int
    done: int
    """Steps that succeeded, failed or were skipped."""
    failed: int
    skipped: int
    elapsed_ms: float
    result: dict[str, Any]

    @classmethod
    def of(cls, result: RunResult) -> FinishedRun:
        counts = {status: 0 for status in StepStatus}
        for step in result.steps:
            counts[step.status] += 1
        return cls(status=result.status, total=len(result.steps), failed=counts[StepStatus.FAILED],
                   done=counts[StepStatus.SUCCEEDED] + counts[StepStatus.FAILED] + counts[StepStatus.SKIPPED],
                   skipped=counts[StepStatus.SKIPPED], elapsed_ms=result.elapsed_ms,
                   result=result.model_dump(mode="json"))


class ArchivedStepRecords(Contract):
    """Input of ``load_step_records``: the references ``archive_step_records`` returned for the run; its output
    is every archived record by step id."""

    run_id: str
    refs: list[str]


# ----------------------------------------------------------------------------------------------------------- code

SANDBOX_RETRY_BEFORE_SETTING = RetryPolicy(first_interval_ms=5000, max_attempts=5)
"""The retry of code activities in histories recorded before ``prepare_code`` returned one (the defaults of
WEFT_SANDBOX_RETRY_INTERVAL_MS and WEFT_SANDBOX_RETRY_ATTEMPTS)."""


class PrepareCodeRequest(Contract):
    """Input of ``prepare_code``."""

    tools: list[str] | None = None
    """The tools the code may call; None: the whole catalog."""
    code: str | None = None
    """The code (to find the tools it needs approved)."""


class PreparedCode(Contract):
    """Output of ``prepare_code``."""

    tools: dict[str, str]
    """Python name → tool name of the tools the code may call."""
    specs: dict[str, ToolSpec]
    """Their specs, by tool name."""
    limits: dict[str, Any]
    """The sandbox limits (``shared.sandbox.Limits.to_dict``)."""
    max_fan_out: int
    approval_timeout_s: int
    sandbox_retry: RetryPolicy = SANDBOX_RETRY_BEFORE_SETTING
    """How ``run_code_step`` is retried, and ``run_code_inline`` when the sandbox was busy."""

    @property
    def max_rounds(self) -> int:
        """Replay steps that may wait on tools (WEFT_SANDBOX_MAX_ROUNDS)."""
        return int(self.limits["max_rounds"])


class PendingCallData(Contract):  # type: ignore[no-redef]  # see ``kwargs``
    """A tool call the code waits for (the JSON form of ``shared.sandbox.PendingCall``)."""

    call_id: str
    tool: str
    """The tool's Python name in the code."""
    args: list[Any] = Field(default_factory=list)
    # The pydantic mypy plugin's __init__ has a ``**kwargs`` of its own; the field keeps the history's name.
    kwargs: dict[str, Any] = Field(default_factory=dict)


class RecordedCallData(PendingCallData):  # type: ignore[no-redef]
    """A tool call with its outcome, as the orchestrator records it for the next replay step (the JSON form of
    ``shared.sandbox.RecordedCall``: ``RecordedCall.from_dict`` reads it)."""

    result: Any = None
    error: str | None = None

    @classmethod
    def succeeded(cls, call: PendingCallData, result: Any) -> RecordedCallData:
        """``call`` returned ``result`` (JSON data)."""
        return cls(**call.model_dump(include=_CALL_FIELDS), result=result)

    @classmethod
    def failed(cls, call: PendingCallData, error: str) -> RecordedCallData:
        """``call`` failed with ``error`` (the code sees it as ``ToolError``)."""
        return cls(**call.model_dump(include=_CALL_FIELDS), error=error)


_CALL_FIELDS = {"call_id", "tool", "args", "kwargs"}


class CodeRunRequest(Contract):
    """Input of ``run_code_inline`` (and the common part of ``run_code_step``'s)."""

    code: str
    tools: dict[str, str]
    """Python name → tool name."""
    limits: dict[str, Any]
    run_id: str


class CodeStepRequest(CodeRunRequest):
    """Input of ``run_code_step``: one replay step with the outcomes recorded so far."""

    clock_iso: str
    """The run's start, the code's fixed clock."""
    seed: int
    """The seed of the code's ``random`` (:func:`~shared.runs.code_run.seed_for`)."""
    recorded: list[RecordedCallData] = Field(default_factory=list)


class PendingEntry(Contract):
    """A pending call of a replay step, with its arguments by name (or why they could not be named)."""

    pending: PendingCallData
    tool: str
    """The tool's catalog name."""
    args: dict[str, Any] | None = None
    error: str | None = None


class CodeErrorData(Contract):
    """An uncaught error in the code (``shared.sandbox.CodeError``)."""

    type: str
    message: str
    traceback: str = ""


class CodeOutcome(Contract):
    """Output of ``run_code_step`` and ``run_code_inline``.

    ``finished``: the code's ``result``, ``stdout`` and, when it raised, ``code_error``. ``pending`` (replay only):
    the ``calls`` it waits on. ``error``: ``failure`` says why it could not run (a violation, a limit).
    """

    status: Literal["finished", "pending", "error", "approval_required"]
    """``approval_required`` (inline only): the code reached a tool that needs a human's approval; nothing ran from
    that call on, and ``tool_calls`` holds the calls that ran, for the run to go on by replay."""
    result: Any = None
    stdout: str = ""
    error: ErrorInfo | CodeErrorData | None = None
    """An :class:`ErrorInfo` when ``status`` is ``error``; the code's own error when it finished raising."""
    calls: list[PendingEntry] = Field(default_factory=list)
    tool_calls: list[RecordedCallData] = Field(default_factory=list)
    """Inline runs: every call the code made, with its outcome."""
    steps: list[StepRecord] = Field(default_factory=list)
    """Inline runs: each call's step record."""

    @property
    def failure(self) -> ErrorInfo | None:
        """Why the code could not run (``status == "error"``)."""
        return self.error if isinstance(self.error, ErrorInfo) else None

    @property
    def code_error(self) -> CodeErrorData | None:
        """The error the code raised, when it finished by raising."""
        return self.error if isinstance(self.error, CodeErrorData) else None


# ----------------------------------------------------------------------------------------------------------- task


class PrepareTaskRequest(Contract):
    """Input of ``prepare_task``."""

    task: str
    tools: list[str] | None = None
    """The caller's tools; None: tool search picks them."""
    run_id: str | None = None


class PreparedTask(Contract):
    """Output of ``prepare_task``."""

    tools: list[str]
    """The tools the planner starts with."""
    max_turns: int
    """Planner turns per task (WEFT_TASK_MAX_TURNS)."""
    search_k: int
    """Tools per search (WEFT_TASK_TOOLS_K)."""
    approval_timeout_s: int
    llm_retry: RetryPolicy
    """How the LLM activities are retried (WEFT_LLM_RETRY_INTERVAL_MS, WEFT_LLM_RETRY_ATTEMPTS)."""


class SearchToolsRequest(Contract):
    """Input of ``search_tools`` (output: the tool names found, best first)."""

    query: str
    k: int
    run_id: str | None = None


class PlannerReply(BaseModel):
    """What the planner decided, after validation."""

    action: Literal["plan", "code", "answer", "search_tools"]
    plan: Plan | None = None
    code: str | None = None
    answer: str | None = None
    query: str | None = None
    final: bool = True


class Repair(Contract):
    """The planner's unusable reply and what was wrong with it, for one repair round."""

    raw: str
    error: str


class TranscriptTurn(Contract):
    """One entry of the planner conversation after the task: its reply (``assistant``), a note (``user``) or the
    results of a sub-run (``results``)."""

    role: Literal["assistant", "user", "results"]
    content: str | None = None
    results: list[dict[str, Any]] | None = None

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class LlmPlanRequest(Contract):
    """Input of ``llm_plan``."""

    task: str
    style: TaskStyle
    tools: list[str]
    transcript: list[TranscriptTurn] = Field(default_factory=list)
    repair: Repair | None = None
    run_id: str | None = None

    def dump(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"transcript"})
        return {**data, "transcript": [turn.dump() for turn in self.transcript]}


class LlmPlanReply(Contract):
    """Output of ``llm_plan``: the checked decision, or (``ok`` false) what was wrong with the reply."""

    ok: bool
    reply: PlannerReply | None = None
    error: str | None = None
    raw: str = ""
    """The model's reply text (repeated to it in a repair round)."""
    usage: TokenUsage = Field(default_factory=TokenUsage)


class LlmAnswerRequest(Contract):
    """Input of ``llm_answer``."""

    task: str
    results: list[dict[str, Any]]
    run_id: str | None = None


class LlmAnswerReply(Contract):
    """Output of ``llm_answer``."""

    answer: str
    usage: TokenUsage = Field(default_factory=TokenUsage)


# ------------------------------------------------------------------------------------------------------- approval


class ApprovalDecision(Contract):
    """The ``approval`` event's data (``POST /api/runs/{id}/approve``)."""

    approved: bool = False
    reason: str = ""
    by: str = ""
    """The approving caller's name, added by the API (never from the body)."""
    call_ids: list[str] = Field(default_factory=list)
    """The awaiting calls decided (the API always names them: those the approver was shown)."""
    args_sha256: dict[str, str] = Field(default_factory=dict)
    """Each decided call's argument hash as the approver saw it: a call whose arguments differ is not decided."""

    def decides(self, pending: PendingApproval) -> bool:
        """Whether this decision names ``pending`` with the arguments it waits with."""
        return pending.call_id in self.call_ids and self.args_sha256.get(pending.call_id) == pending.args_sha256
