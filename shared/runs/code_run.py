"""Code mode's orchestrator side: the bookkeeping of a durable code run (what is recorded between replay steps), the
seed of its ``random`` and the tools it may call. Pure, so the orchestrator imports it; the activities' side (the
sandbox, payloads, the executor) is :mod:`shared.runs.code_sandbox`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime

from shared.catalog.catalog import Catalog
from shared.catalog.schema import python_identifier
from shared.errors import CodeFailed, InvalidRequest, ToolArgumentsInvalid
from shared.models import ErrorInfo, RunResult, RunStatus, StepRecord, StepStatus, ToolCall, ToolSpec, hash_args
from shared.runs.contracts import CodeOutcome, PendingCallData, RecordedCallData
from shared.runs.custom_status import CustomStatus, step_summaries
from shared.runs.names import Stage
from shared.runs.step_calls import StepCall, StepOutcome, offloaded

__all__ = ["CodeRun", "code_tools", "seed_for"]


def code_tools(catalog: Catalog, names: Sequence[str] | None) -> dict[str, str]:
    """``{python name: tool name}`` for the tools the code may call (all of the catalog when ``names`` is None)."""
    chosen = list(names) if names is not None else catalog.names()
    mapping: dict[str, str] = {}
    for index, name in enumerate(chosen):
        if name not in catalog:
            close = catalog.close_names(name)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise InvalidRequest(f"unknown tool {name!r}{hint}", field=f"tools[{index}]")
        mapping[".".join(python_identifier(part) for part in name.split("."))] = name
    return mapping


def seed_for(run_id: str) -> int:
    """The seed of the code's ``random``: fixed per run, so every replay sees the same numbers."""
    return int(hashlib.sha256(run_id.encode()).hexdigest()[:8], 16)


class CodeRun:
    """Progress of a durable code run; pure, so it can live in the orchestrator."""

    def __init__(self, run_id: str, started: datetime) -> None:
        self.run_id = run_id
        self.started = started
        self.recorded: list[RecordedCallData] = []
        """Every call's outcome so far, for the next replay step."""
        self.records: list[StepRecord] = []
        self._pending: dict[str, PendingCallData] = {}

    def prepare(self, step: CodeOutcome, specs: Mapping[str, ToolSpec], now: datetime) -> list[StepCall]:
        """Turn a pending replay step into ``call_tool`` calls; calls with unusable arguments fail at once."""
        calls = []
        for entry in step.calls:
            pending = entry.pending
            record = StepRecord(step_id=pending.call_id, tool=entry.tool, started_at=now)
            self.records.append(record)
            if entry.error is not None or entry.args is None:
                message = entry.error or "the arguments could not be named"
                record.status, record.finished_at = StepStatus.FAILED, now
                record.error = ErrorInfo.of(ToolArgumentsInvalid, message)
                self.recorded.append(RecordedCallData.failed(pending, message))
                continue
            record.status = StepStatus.RUNNING
            record.args_hash = hash_args(entry.args)
            self._pending[pending.call_id] = pending
            calls.append(StepCall(call=ToolCall(run_id=self.run_id, step_id=pending.call_id, tool=entry.tool,
                                                args=entry.args), retry=specs[entry.tool].retry))
        return calls

    def record(self, outcomes: list[StepOutcome], now: datetime) -> None:
        """Take the outcomes of the calls :meth:`prepare` returned."""
        by_id = {r.step_id: r for r in self.records}
        for outcome in outcomes:
            pending = self._pending.pop(outcome.step_id)
            record = by_id[outcome.step_id]
            result = outcome.result
            record.attempts, record.latency_ms, record.finished_at = outcome.attempts, result.latency_ms, now
            record.redelivered = result.redelivered
            if result.ok:
                record.status = StepStatus.SUCCEEDED
                value = offloaded(result.blob_ref) if result.blob_ref else result.value
                record.result = result.recorded_value()
                self.recorded.append(RecordedCallData.succeeded(pending, value))
            else:
                record.status = StepStatus.FAILED
                record.error = result.error
                message = result.error.message if result.error else "tool failed"
                self.recorded.append(RecordedCallData.failed(pending, message))

    def status(self, round_index: int) -> CustomStatus:
        """The orchestration's custom status while the code runs: rounds, calls so far and their summaries."""
        return CustomStatus(stage=Stage.EXECUTING, mode="code", round=round_index, done=len(self.recorded),
                            total=len(self.records), failed=sum(r.status == StepStatus.FAILED for r in self.records),
                            steps=step_summaries(self.records))

    def resume(self, paused: CodeOutcome, now: datetime) -> None:
        """Go on by replay from an inline run that stopped at a call needing approval: the calls it ran are
        recorded (their results feed the replay, so they never run again)."""
        self.records = list(paused.steps)
        self.recorded = list(paused.tool_calls)

    def result(self, step: CodeOutcome | None, now: datetime, error: ErrorInfo | None = None) -> RunResult:
        """The :class:`RunResult`: the finished ``step``'s value and stdout as output, the tool calls as steps."""
        elapsed = round((now - self.started).total_seconds() * 1000.0, 3)
        errors = [error] if error else []
        output = None
        if step is not None:
            output = {"result": step.result, "stdout": step.stdout}
            if (raised := step.code_error) is not None:
                errors.append(ErrorInfo.of(CodeFailed, f"{raised.type}: {raised.message}\n{raised.traceback}".strip(),
                                           field="code"))
        status = RunStatus.FAILED if errors else (
            RunStatus.COMPLETED_WITH_ERRORS if any(r.status == StepStatus.FAILED for r in self.records)
            else RunStatus.COMPLETED)
        return RunResult(run_id=self.run_id, mode="code", status=status, steps=self.records, output=output,
                         errors=errors, elapsed_ms=elapsed)
