"""The contracts between orchestrators and activities: the dict shapes recorded in Durable histories before the
models existed still validate, names name real functions, and a recorded call has one JSON form."""

from __future__ import annotations

import importlib
import json

import pytest

from shared.models import RetryPolicy, TokenUsage
from shared.runs.contracts import (
    SANDBOX_RETRY_BEFORE_SETTING,
    ApprovalDecision,
    CodeErrorData,
    CodeOutcome,
    CodeStepRequest,
    LlmAnswerReply,
    LlmPlanReply,
    LlmPlanRequest,
    PreparedCode,
    PreparedPlan,
    PreparedTask,
    RecordedCallData,
)
from shared.runs.custom_status import AWAITING_SHOWN, STATUS_MAX_CHARS, STATUS_MAX_STEPS, CustomStatus, fit_status
from shared.runs.names import Activity, Orchestrator, Stage
from shared.runs.run_status import run_view
from shared.sandbox import Capacity, CodeError, Limits, PendingCall, RecordedCall, ReplayStep

SPEC = {"name": "weather.get", "description": "Weather.", "parameters": {"type": "object", "properties": {}}}


def test_prepare_plan_output_as_recorded_before() -> None:
    prepared = PreparedPlan.model_validate({"specs": {"weather.get": SPEC}, "max_fan_out": 100,
                                            "approval_timeout_s": 3600})
    assert prepared.specs["weather.get"].name == "weather.get" and prepared.max_fan_out == 100


def test_prepare_code_output_from_before_the_retry_setting_takes_its_defaults() -> None:
    old = {"tools": {"weather_get": "weather.get"}, "specs": {"weather.get": SPEC}, "limits": Limits().to_dict(),
           "max_fan_out": 100, "approval_timeout_s": 3600}
    prepared = PreparedCode.model_validate(old)
    assert prepared.sandbox_retry == SANDBOX_RETRY_BEFORE_SETTING == Capacity().retry_policy()
    assert prepared.max_rounds == Limits().max_rounds
    newer = PreparedCode.model_validate({**old, "sandbox_retry": {"first_interval_ms": 10, "max_attempts": 2}})
    assert newer.sandbox_retry == RetryPolicy(first_interval_ms=10, max_attempts=2)


def test_replay_step_outputs_as_recorded_before() -> None:
    finished = CodeOutcome.model_validate(ReplayStep.finished(3, "hi\n", CodeError("ValueError", "no", "tb")).to_dict())
    assert finished.status == "finished" and finished.result == 3 and finished.failure is None
    assert finished.code_error == CodeErrorData(type="ValueError", message="no", traceback="tb")
    pending = CodeOutcome.model_validate({"status": "pending", "calls": [
        {"pending": {"call_id": "c1", "tool": "weather_get", "args": ["Paris"], "kwargs": {}},
         "tool": "weather.get", "args": {"city": "Paris"}, "error": None}]})
    assert pending.calls[0].pending.call_id == "c1" and pending.calls[0].args == {"city": "Paris"}
    failed = CodeOutcome.model_validate({"status": "error", "error": {
        "code": "sandbox_violation", "message": "import os is not allowed", "field": "code", "retryable": False}})
    assert failed.failure is not None and failed.failure.code == "sandbox_violation" and failed.code_error is None


def test_inline_output_as_recorded_before() -> None:
    outcome = CodeOutcome.model_validate({
        "status": "finished", "result": 1, "stdout": "", "error": None,
        "tool_calls": [{"call_id": "c1", "tool": "f", "args": [], "kwargs": {}, "result": 1, "error": None}],
        "steps": [{"step_id": "c1", "tool": "f", "status": "succeeded", "attempts": 1}]})
    assert outcome.tool_calls[0].result == 1 and outcome.steps[0].status == "succeeded"


def test_a_recorded_call_has_one_json_form() -> None:
    call = PendingCall("c2", "weather_get", ["Paris"], {"unit": "C"})
    ours = RecordedCallData.succeeded(RecordedCallData.model_validate(call.to_dict()), {"temp": 21})
    assert ours.model_dump(mode="json") == RecordedCall.succeeded(call, {"temp": 21}).to_dict()
    assert RecordedCall.from_dict(ours.model_dump(mode="json")) == RecordedCall.succeeded(call, {"temp": 21})
    request = CodeStepRequest.model_validate({"code": "x", "tools": {}, "limits": {}, "run_id": "r", "clock_iso":
                                              "2026-01-01T00:00:00+00:00", "seed": 7, "recorded": [ours.dump()]})
    assert request.recorded == [ours]


def test_task_activity_outputs_as_recorded_before() -> None:
    prepared = PreparedTask.model_validate({"tools": ["a"], "max_turns": 4, "search_k": 8, "approval_timeout_s": 60,
                                            "llm_retry": {"first_interval_ms": 2000, "max_attempts": 5}})
    assert prepared.llm_retry.max_attempts == 5
    reply = LlmPlanReply.model_validate({"ok": True, "reply": {"action": "answer", "answer": "42", "plan": None,
                                                               "code": None, "query": None, "final": True},
                                         "raw": "{}", "usage": {"prompt_tokens": 3, "completion_tokens": 1,
                                                                "cached_tokens": 0}, "approval_tools": []})
    assert reply.reply is not None and reply.reply.answer == "42" and reply.usage.total_tokens == 4
    unusable = LlmPlanReply.model_validate({"ok": False, "error": "bad", "raw": "x", "usage": {}})
    assert unusable.reply is None and unusable.usage == TokenUsage()
    answer = LlmAnswerReply.model_validate({"answer": "42", "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                                                      "cached_tokens": 0}})
    assert answer.usage.total_tokens == 2


def test_planner_input_keeps_its_transcript_shape() -> None:
    old = {"task": "t", "style": "plan", "tools": ["a"], "run_id": "r", "repair": {"raw": "x", "error": "e"},
           "transcript": [{"role": "assistant", "content": "{}"}, {"role": "results", "results": [{"step": "s1"}]},
                          {"role": "user", "content": "Tools loaded: none new."}]}
    assert LlmPlanRequest.model_validate(old).dump() == old


def test_custom_status_leaves_out_what_a_stage_does_not_know() -> None:
    status = CustomStatus(stage=Stage.EXECUTING, mode="plan", done=2, total=5, failed=0, elapsed_ms=12.5)
    assert status.dump() == {"stage": "executing", "mode": "plan", "done": 2, "total": 5, "failed": 0,
                             "elapsed_ms": 12.5}
    assert status.progress == {"done": 2, "total": 5, "failed": 0, "skipped": 0, "elapsed_ms": 12.5}
    assert CustomStatus.model_validate({"stage": "planning", "mode": "task", "turn": 1}).progress is None


def test_an_approval_event_without_a_decision_is_a_refusal() -> None:
    assert ApprovalDecision.model_validate({}).approved is False
    assert ApprovalDecision.model_validate({"approved": True, "reason": ""}).approved is True


@pytest.mark.parametrize(("module", "names"), [
    ("activities.tool_calls", [Activity.PREPARE_PLAN, Activity.CALL_TOOL, Activity.ARCHIVE_STEP_RECORDS,
                               Activity.LOAD_STEP_RECORDS, Activity.ADVANCE_PLAN, Activity.FINISH_PLAN,
                               Activity.LOAD_PLAN_PROGRESS]),
    ("activities.code_steps", [Activity.PREPARE_CODE, Activity.RUN_CODE_STEP, Activity.RUN_CODE_INLINE]),
    ("activities.task_steps", [Activity.PREPARE_TASK, Activity.SEARCH_TOOLS, Activity.LLM_PLAN, Activity.LLM_ANSWER]),
    ("orchestrations.run", [Orchestrator.RUN]),
    ("orchestrations.fan_out", [Orchestrator.RUN_STEPS]),
])
def test_every_name_is_a_durable_function(module: str, names: list[str]) -> None:
    loaded = importlib.import_module(module)  # a Durable function is named after its Python function
    assert all(hasattr(loaded, name) for name in names)


def test_every_activity_name_is_covered() -> None:
    covered = {"prepare_plan", "call_tool", "archive_step_records", "load_step_records", "advance_plan",
               "finish_plan", "load_plan_progress",
               "prepare_code", "run_code_step", "run_code_inline", "prepare_task",
               "search_tools", "llm_plan", "llm_answer"}
    assert {a.value for a in Activity} == covered


def test_a_custom_status_stays_within_durables_16_kb_of_utf16_text() -> None:
    long_name = "t" * 64
    steps = [{"step_id": f"{i:0>64}", "tool": long_name, "status": "succeeded", "attempts": 1, "latency_ms": 12.345}
             for i in range(STATUS_MAX_STEPS)]
    preview = {"call_id": "c" * 64, "tool": long_name, "args_preview": "x" * 500, "args_sha256": "f" * 64}
    status = CustomStatus.model_validate({"stage": "awaiting_approval", "mode": "plan", "done": 3, "total": 9,
                                          "steps": steps, "awaiting": [preview] * AWAITING_SHOWN, "awaiting_more": 4})
    dumped = status.dump()
    assert len(json.dumps(dumped)) <= STATUS_MAX_CHARS < 8192
    shown = dumped["steps"]
    assert 0 < len(shown) < STATUS_MAX_STEPS and shown[-1] == steps[-1]  # the latest steps are kept
    assert len(dumped["awaiting"]) + dumped["awaiting_more"] == AWAITING_SHOWN + 4  # the rest are counted
    assert fit_status({"stage": "executing", "steps": steps[:3]}) == {"stage": "executing", "steps": steps[:3]}


def test_a_status_naming_hundreds_of_tools_awaiting_approval_still_fits() -> None:
    pending = [{"call_id": f"c{i}", "tool": f"{i:0>64}", "args_preview": "{}", "args_sha256": "f" * 64}
               for i in range(300)]
    status = CustomStatus.model_validate({"stage": "awaiting_approval", "mode": "plan",
                                          "tools": sorted(p["tool"] for p in pending),
                                          "awaiting": pending[:AWAITING_SHOWN], "awaiting_more": 280})
    dumped = status.dump()
    assert len(json.dumps(dumped)) <= STATUS_MAX_CHARS
    assert set(dumped["tools"]) == {p["tool"] for p in dumped["awaiting"]}
    assert len(dumped["awaiting"]) + dumped["awaiting_more"] == 300


def test_the_run_view_counts_the_calls_awaiting_approval_it_does_not_list() -> None:
    pending = [{"call_id": f"c{i}", "tool": "send", "args_preview": "{}", "args_sha256": "f" * 64}
               for i in range(AWAITING_SHOWN)]
    custom = CustomStatus.model_validate({"stage": "awaiting_approval", "mode": "plan", "tools": ["send"],
                                          "awaiting": pending, "awaiting_more": 7}).dump()
    view = run_view("r1", "Running", custom, None, None, None)
    assert len(view["awaiting_approval"]["calls"]) == AWAITING_SHOWN and view["awaiting_approval"]["more"] == 7
    assert "more" not in run_view("r1", "Running", {**custom, "awaiting_more": None}, None, None, None)[
        "awaiting_approval"]
