"""Results of tool calls and runs: errors as callers see them, and round trips through plain JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from shared import models, results
from shared.errors import InvalidRequest, ToolFailed
from shared.models import hash_args
from shared.results import ErrorInfo, RunResult, RunStatus, StepRecord, StepStatus, ToolResult


def test_public_api_is_declared_and_re_exported_by_models() -> None:
    assert set(results.__all__) == {
        "ErrorInfo", "RunMode", "RunResult", "RunStatus", "StepRecord", "StepStatus", "TokenUsage", "ToolResult",
    }
    assert all(getattr(models, name) is getattr(results, name) for name in results.__all__)


def test_error_info_from_exceptions() -> None:
    weft = ErrorInfo.from_exception(InvalidRequest("bad", field="args.x"))
    assert weft.model_dump() == {"code": "invalid_request", "message": "bad", "field": "args.x", "retryable": False}
    assert ErrorInfo.from_exception(ToolFailed("down")).retryable is True
    assert ErrorInfo.from_exception(ToolFailed("down"), retryable=False).retryable is False
    other = ErrorInfo.from_exception(KeyError("k"))
    assert other.code == "tool_failed" and other.message == "KeyError: 'k'" and other.retryable is False


def test_run_result_serializes_to_plain_json() -> None:
    started = datetime(2026, 1, 1, tzinfo=UTC)
    result = RunResult(
        run_id="r",
        mode="plan",
        status=RunStatus.COMPLETED_WITH_ERRORS,
        steps=[
            StepRecord(step_id="s1", tool="t", status=StepStatus.SUCCEEDED, attempts=1, args_hash=hash_args({}),
                       result={"v": 1}, started_at=started, finished_at=started),
            StepRecord(step_id="s2", tool="t", status=StepStatus.SKIPPED,
                       error=ErrorInfo(code="skipped", message="s1 failed")),
        ],
        output={"s1": {"v": 1}},
    )
    data = json.loads(result.model_dump_json())
    assert data["status"] == "completed_with_errors"
    assert data["steps"][0]["status"] == "succeeded"
    assert data["steps"][0]["started_at"] == "2026-01-01T00:00:00Z"
    assert data["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}
    assert RunResult.model_validate(data) == result
    assert ToolResult(ok=True, value=[1]).model_dump()["truncated"] is False
