"""The bookkeeping of one task run: the planner's turns, the tools it may use, what it was shown, the steps of its
sub-runs, the tokens spent and how the run ends.

Pure and deterministic (it runs inside the Durable orchestrator, like :class:`~shared.runs.plan_run.PlanRun`): the
orchestrator asks it what to send, yields the activity or sub-run, and hands back what came out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.errors import ApprovalDenied, ApprovalTimeout, ModelBehaviorError, StepFailed, ToolFailed, TurnLimitExceeded
from shared.models import ErrorInfo, RunRequest, RunResult, RunStatus, StepRecord, StepStatus, TokenUsage
from shared.runs.contracts import (
    LlmAnswerReply,
    LlmAnswerRequest,
    LlmPlanReply,
    LlmPlanRequest,
    PlannerReply,
    PreparedTask,
    Repair,
    SearchToolsRequest,
    TranscriptTurn,
)

__all__ = ["TaskRun"]

_NOT_SHOWN = (StepFailed.code, ToolFailed.code)
_REFUSALS = frozenset({ApprovalDenied.code, ApprovalTimeout.code})
"""Errors of a sub-run step that end the task: an approval was denied or timed out."""
"""Run errors not shown to the models again: the failed steps they summarise are shown one by one."""


class TaskRun:
    """Progress of a task. Loop while not :attr:`finished`: :meth:`plan_request` → :meth:`planned`; for a
    ``search_tools`` decision :meth:`search_request` → :meth:`tools_found`; for a plan or code :meth:`sub_run` →
    :meth:`ran`, and when that says so :meth:`answer_request` → :meth:`answered`. Then :meth:`result`."""

    def __init__(self, run_id: str, request: RunRequest, prepared: PreparedTask, started: datetime) -> None:
        assert request.task is not None
        self.run_id = run_id
        self.task = request.task
        self.options = request.options
        self.max_turns = prepared.max_turns
        self.search_k = prepared.search_k
        self.started = started
        self.tools: list[str] = list(prepared.tools)
        """Tools the planner may use (search results, plus tools loaded on demand)."""
        self.transcript: list[TranscriptTurn] = []
        """The conversation with the planner after the task: its replies and what it was shown."""
        self.results: list[dict[str, Any]] = []
        """Outcomes of every tool call so far, as shown to the models."""
        self.steps: list[StepRecord] = []
        """The sub-runs' step records, their ids prefixed ``turn<n>.``."""
        self.usage = TokenUsage()
        self.turns = 0
        """Planner replies used so far."""
        self.answer: str | None = None
        self.error: ErrorInfo | None = None
        self._repair: Repair | None = None

    @property
    def finished(self) -> bool:
        """Whether the run has its answer or its error."""
        return self.answer is not None or self.error is not None

    def plan_request(self) -> LlmPlanRequest | None:
        """The next planner call, or None (and the run fails) when the turns are used up."""
        if self.turns >= self.max_turns:
            self.error = ErrorInfo.of(TurnLimitExceeded, f"no answer after {self.turns} planner turns "
                                      "(WEFT_TASK_MAX_TURNS)")
            return None
        return LlmPlanRequest(task=self.task, style=self.options.task_style, tools=list(self.tools),
                              transcript=list(self.transcript), repair=self._repair, run_id=self.run_id)

    def planned(self, reply: LlmPlanReply) -> PlannerReply | None:
        """Take the planner's reply. Returns the decision when the orchestrator has work to do (search, plan, code);
        None after a direct answer, an unusable reply (one repair round, then the run fails)."""
        self.usage += reply.usage
        if not reply.ok or reply.reply is None:
            if self._repair is not None:
                self.error = ErrorInfo.of(ModelBehaviorError, "the model's reply could not be used, even after a "
                                          f"repair round: {reply.error}", field="task")
            else:
                self._repair = Repair(raw=reply.raw, error=reply.error or "the reply could not be used")
            return None
        self._repair = None
        self.turns += 1
        self.transcript.append(TranscriptTurn(role="assistant", content=reply.raw))
        if reply.reply.action == "answer":
            self.answer = reply.reply.answer
            return None
        return reply.reply

    def search_request(self, decision: PlannerReply) -> SearchToolsRequest:
        """The tool search a ``search_tools`` decision asks for."""
        return SearchToolsRequest(query=decision.query or "", k=self.search_k, run_id=self.run_id)

    def tools_found(self, found: list[str]) -> None:
        """Add the tools a search found, and tell the planner which are new."""
        added = [name for name in found if name not in self.tools]
        self.tools.extend(added)
        self.transcript.append(TranscriptTurn(role="user", content="Tools loaded: " + (", ".join(added) or "none new")
                                              + ". They are now listed in the tools above."))

    def sub_run(self, decision: PlannerReply) -> RunRequest:
        """The durable sub-run that executes a plan or code decision."""
        assert decision.action in ("plan", "code")
        return RunRequest(mode=decision.action, plan=decision.plan, code=decision.code,
                          tools=self.tools if decision.action == "code" else None, options=self.options)

    def sub_run_id(self) -> str:
        """The sub-run's instance id: one per turn, so a replayed turn finds its sub-run again."""
        return f"{self.run_id}:turn{self.turns}"

    def ran(self, decision: PlannerReply, result: RunResult) -> bool:
        """Take a sub-run's result and show it to the planner; True when the worker should answer now (the planner
        said this was the last step, or the turns are used up)."""
        for record in result.steps:
            self.steps.append(record.model_copy(update={"step_id": f"turn{self.turns}.{record.step_id}"}))
        shown: list[dict[str, Any]] = [
            {"step": r.step_id, "tool": r.tool, "status": r.status.value, "result": r.result,
             "error": r.error.message if r.error else None} for r in result.steps]
        if result.output is not None and decision.action == "code":
            shown.append({"code_result": result.output})
        shown += [{"error": e.message} for e in result.errors if e.code not in _NOT_SHOWN]
        self.results.extend(shown)
        self.transcript.append(TranscriptTurn(role="results", results=shown))
        refusal = next((r.error for r in result.steps if r.error is not None and r.error.code in _REFUSALS), None)
        if refusal is not None:  # a human said no (or nobody answered): the task ends; the planner may not go round it
            self.error = refusal
            return False
        return decision.final or self.turns >= self.max_turns

    def answer_request(self) -> LlmAnswerRequest:
        """The worker's call: the task and every result so far."""
        return LlmAnswerRequest(task=self.task, results=list(self.results), run_id=self.run_id)

    def answered(self, written: LlmAnswerReply) -> None:
        """Take the worker's answer."""
        self.usage += written.usage
        self.answer = written.answer

    def result(self, now: datetime) -> RunResult:
        """The task's :class:`RunResult`: the answer, the turns and tools as output; every sub-run step."""
        if self.error is not None:
            status = RunStatus.FAILED
        elif any(s.status == StepStatus.FAILED for s in self.steps):
            status = RunStatus.COMPLETED_WITH_ERRORS
        else:
            status = RunStatus.COMPLETED
        elapsed = round((now - self.started).total_seconds() * 1000.0, 3)
        return RunResult(run_id=self.run_id, mode="task", status=status, steps=self.steps,
                         output={"answer": self.answer, "turns": self.turns, "tools": self.tools},
                         errors=[self.error] if self.error else [], usage=self.usage, elapsed_ms=elapsed)
