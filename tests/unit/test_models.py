"""The JSON contract: request parsing and its error fields, limits, hashes and round trips."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from pydantic import ValidationError

from shared import models
from shared.errors import InvalidRequest
from shared.models import (
    ModelLimits,
    Plan,
    ToolCall,
    ToolSpec,
    canonical_json,
    check_plan_limits,
    format_field,
    hash_args,
    parse_model,
    parse_run_request,
    validate_request,
)

PLAN = {"steps": [{"id": "s1", "tool": "calc", "args": {"x": 1}}, {"id": "s2", "tool": "calc", "depends_on": ["s1"]}]}


def test_public_api_is_declared() -> None:
    assert set(models.__all__) == {
        "IDEMPOTENCY_KEY_PATTERN", "NAME_PATTERN", "STEP_ID_PATTERN", "ErrorInfo", "ModelLimits", "Plan",
        "RetryPolicy", "RunMode", "RunOptions", "RunRequest", "RunResult", "RunStatus", "Step", "StepRecord",
        "StepStatus", "TokenUsage", "ToolCall", "ToolResult", "ToolSpec", "canonical_json", "check_plan_limits",
        "format_field", "hash_args", "parse_json", "parse_model", "parse_run_request", "validate_request",
    }
    assert all(hasattr(models, name) for name in models.__all__)


# ----------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        pytest.param({"mode": "plan"}, "plan", "required when mode is 'plan'", id="plan-missing"),
        pytest.param({"mode": "code"}, "code", "required when mode is 'code'", id="code-missing"),
        pytest.param({"mode": "task"}, "task", "required when mode is 'task'", id="task-missing"),
        pytest.param({"mode": "task", "task": "x", "code": "y"}, "code", "only allowed when mode is 'code'",
                     id="code-in-task-mode"),
        pytest.param({"mode": "code", "code": "x", "plan": PLAN}, "plan", "only allowed", id="plan-in-code-mode"),
        pytest.param({"mode": "dance"}, "mode", "'plan', 'code' or 'task'", id="bad-mode"),
        pytest.param({"mode": "task", "task": "x", "color": 1}, "color", "Extra inputs", id="unknown-key"),
        pytest.param({"mode": "plan", "plan": {"steps": []}}, "plan.steps", "at least 1", id="empty-plan"),
        pytest.param(
            {"mode": "plan", "plan": {"steps": [PLAN["steps"][0], {"id": "a.b", "tool": "calc"}]}},
            "plan.steps[1].id", "pattern", id="dotted-step-id",
        ),
        pytest.param(
            {"mode": "plan", "plan": {"steps": [{"id": "s", "tool": "9lives"}]}}, "plan.steps[0].tool", "pattern",
            id="bad-tool-name",
        ),
        pytest.param(
            {"mode": "plan", "plan": {"steps": [{"id": "s", "tool": "t", "args": []}]}}, "plan.steps[0].args",
            "dictionary", id="args-not-object",
        ),
        pytest.param({"mode": "task", "task": "x", "idempotency_key": "a/b"}, "idempotency_key", "pattern",
                     id="bad-idempotency-key"),
        pytest.param({"mode": "task", "task": "x", "options": {"max_parallel": 0}}, "options.max_parallel",
                     "greater than or equal to 1", id="max-parallel-zero"),
        pytest.param({"mode": "task", "task": "x", "options": {"max_parallel": "3"}}, "options.max_parallel",
                     "valid integer", id="max-parallel-string"),
        pytest.param({"mode": "task", "task": "x", "options": {"max_parallel": True}}, "options.max_parallel",
                     "valid integer", id="max-parallel-bool"),
        pytest.param({"mode": "task", "task": "x", "options": {"fail_fast": "yes"}}, "options.fail_fast",
                     "valid boolean", id="fail-fast-string"),
        pytest.param({"mode": "task", "task": "x", "options": {"fail_fast": 1}}, "options.fail_fast",
                     "valid boolean", id="fail-fast-number"),
        pytest.param({"mode": "task", "task": "x", "options": {"timeout_s": "60"}}, "options.timeout_s",
                     "valid number", id="timeout-string"),
        pytest.param({"mode": "task", "task": "x", "metadata": {"k": 1}}, "metadata.k", "string", id="metadata-type"),
        pytest.param({"mode": "code", "code": "x", "tools": ["ok", "not ok"]}, "tools[1]", "pattern",
                     id="bad-tool-in-list"),
    ],
)
def test_parse_errors_name_the_field(body: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_run_request(body)
    assert caught.value.field == field
    assert fragment in caught.value.message
    assert "Value error," not in caught.value.message


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"mode": "plan", "plan": PLAN}, id="plan"),
        pytest.param({"mode": "code", "code": "return 1", "tools": ["calc"]}, id="code"),
        pytest.param({"mode": "task", "task": "convert 3 miles to km", "idempotency_key": "order-42:v1",
                      "metadata": {"user": "u1"}, "options": {"fail_fast": True, "timeout_s": 60}}, id="task"),
    ],
)
def test_valid_requests_round_trip_through_json(body: dict[str, Any]) -> None:
    request = parse_run_request(json.dumps(body))
    again = parse_run_request(request.model_dump_json())
    assert again == request
    assert request.mode == body["mode"]


def test_parse_accepts_bytes_and_reports_bad_json() -> None:
    assert parse_run_request(b'{"mode": "task", "task": "hi"}').task == "hi"
    with pytest.raises(InvalidRequest) as caught:
        parse_run_request("{not json")
    assert "json" in caught.value.message.lower()


def test_parse_model_prefixes_field_and_caps_the_message() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_model(Plan, {"steps": [{"id": str(i)} for i in range(10)]}, field="body.plan")
    assert caught.value.field == "body.plan.steps[0].id"
    assert "more)" in caught.value.message


def test_step_defaults_and_ref_values_are_plain_json() -> None:
    plan = Plan.model_validate({"steps": [{"id": "s1", "tool": "t", "args": {"a": {"$ref": "s0.x[1]"}}}]})
    step = plan.steps[0]
    assert step.depends_on == []
    assert step.args == {"a": {"$ref": "s0.x[1]"}}


# ----------------------------------------------------------------------------------------------- tool specs


def test_tool_spec_defaults() -> None:
    spec = ToolSpec(name="weather.get", description="Weather.")
    assert spec.parameters == {"type": "object", "properties": {}}
    assert spec.retry.max_attempts == 3 and spec.retry.first_interval_ms == 500
    assert spec.idempotent and not spec.side_effects and not spec.requires_approval
    assert ToolSpec.model_validate_json(spec.model_dump_json()) == spec


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        pytest.param({"name": "x" * 65}, "pattern", id="name-too-long"),
        pytest.param({"name": "-x"}, "pattern", id="name-start"),
        pytest.param({"name": "x", "parameters": {"type": "array"}}, '"type": "object"', id="not-object-schema"),
        pytest.param({"name": "x", "parameters": {"type": "object", "properties": {"a": {"type": "strng"}}}},
                     "not a valid JSON schema", id="invalid-schema"),
        pytest.param({"name": "x", "timeout_s": 0}, "greater than 0", id="zero-timeout"),
        pytest.param({"name": "x", "retry": {"max_attempts": 0}}, "greater than or equal to 1", id="zero-attempts"),
        pytest.param({"name": "x", "owner": "me"}, "Extra inputs", id="unknown-key"),
    ],
)
def test_tool_spec_rejects(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        ToolSpec.model_validate(data)


# ----------------------------------------------------------------------------------------------- calls and hashes


def test_tool_call_idempotency_key_is_stable_across_attempts() -> None:
    first = ToolCall(run_id="run-1", step_id="s3", tool="t", args={"a": 1})
    retry = first.model_copy(update={"attempt": 2})
    assert first.idempotency_key == retry.idempotency_key == "run-1:s3"
    assert "idempotency_key" not in first.model_dump()
    assert ToolCall.model_validate(first.model_dump()) == first


def test_hash_args_is_canonical() -> None:
    assert hash_args({"b": 1, "a": [1, {"y": 2, "x": "é"}]}) == hash_args({"a": [1, {"x": "é", "y": 2}], "b": 1})
    assert hash_args({"a": 1}) != hash_args({"a": 1.5})
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
    with pytest.raises(ValueError):
        canonical_json({"a": float("nan")})


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        pytest.param(("plan", "steps", 3, "args", "city"), "plan.steps[3].args.city", id="plain"),
        pytest.param(("plan.steps[3].args", "a b", 0), 'plan.steps[3].args["a b"][0]', id="root-kept-quoted-key"),
        pytest.param(("args",), "args", id="root-only"),
        pytest.param((), "", id="empty"),
    ],
)
def test_format_field(parts: tuple[str | int, ...], expected: str) -> None:
    assert format_field(parts) == expected


# ----------------------------------------------------------------------------------------------- limits


def test_limits_from_env_defaults_and_overrides() -> None:
    assert ModelLimits.from_env({}) == ModelLimits()
    limits = ModelLimits.from_env({"WEFT_MAX_STEPS": "10", "WEFT_MAX_ARGS_BYTES": "100", "WEFT_MAX_TOOLS": ""})
    assert limits.max_steps == 10 and limits.max_args_bytes == 100
    assert limits.max_tools == 512
    defaults = ModelLimits()
    assert (defaults.max_steps, defaults.max_args_bytes) == (5000, 65536)
    with pytest.raises(ValueError, match="WEFT_MAX_STEPS"):
        ModelLimits.from_env({"WEFT_MAX_STEPS": "0"})
    assert ModelLimits.from_env({"WEFT_MAX_ID_LENGTH": "64"}).max_id_length == 64
    with pytest.raises(ValueError, match="WEFT_MAX_ID_LENGTH must be <= 64"):
        ModelLimits.from_env({"WEFT_MAX_ID_LENGTH": "65"})  # the step id pattern would still stop at 64
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.max_steps = 3  # type: ignore[misc]


def _plan(count: int, **step: Any) -> dict[str, Any]:
    return {"steps": [{"id": f"s{i}", "tool": "t", **step} for i in range(count)]}


@pytest.mark.parametrize(
    ("body", "limits", "field"),
    [
        pytest.param({"mode": "plan", "plan": _plan(4)}, ModelLimits(max_steps=3), "plan.steps", id="steps"),
        pytest.param({"mode": "plan", "plan": _plan(2, args={"text": "x" * 100})}, ModelLimits(max_args_bytes=50),
                     "plan.steps[0].args", id="args-bytes"),
        pytest.param({"mode": "plan", "plan": {"steps": [{"id": "s0", "tool": "t"}, {"id": "abcdef", "tool": "t"}]}},
                     ModelLimits(max_id_length=5), "plan.steps[1].id", id="id-length"),
        pytest.param({"mode": "plan", "plan": _plan(1, depends_on=["a", "b", "c"])}, ModelLimits(max_depends_on=2),
                     "plan.steps[0].depends_on", id="depends-on"),
        pytest.param({"mode": "plan", "plan": _plan(3, args={"t": "x" * 40})}, ModelLimits(max_plan_bytes=150),
                     "plan", id="plan-bytes"),
        pytest.param({"mode": "code", "code": "  \n"}, ModelLimits(), "code", id="code-empty"),
        pytest.param({"mode": "task", "task": "x" * 11}, ModelLimits(max_task_chars=10), "task", id="task-chars"),
        pytest.param({"mode": "task", "task": " "}, ModelLimits(), "task", id="task-empty"),
        pytest.param({"mode": "task", "task": "x", "tools": ["a", "b"]}, ModelLimits(max_tools=1), "tools", id="tools"),
        pytest.param({"mode": "task", "task": "x", "metadata": {"a": "1", "b": "2"}},
                     ModelLimits(max_metadata_items=1), "metadata", id="metadata-items"),
        pytest.param({"mode": "task", "task": "x", "metadata": {"user id": "y" * 9}},
                     ModelLimits(max_metadata_chars=8), 'metadata["user id"]', id="metadata-chars"),
    ],
)
def test_validate_request_names_the_field(body: dict[str, Any], limits: ModelLimits, field: str) -> None:
    request = parse_run_request(body)
    with pytest.raises(InvalidRequest) as caught:
        validate_request(request, limits)
    assert caught.value.field == field


def test_validate_request_accepts_requests_within_limits() -> None:
    validate_request(parse_run_request({"mode": "plan", "plan": _plan(3, args={"x": 1})}), ModelLimits(max_steps=3))
    validate_request(parse_run_request({"mode": "code", "code": "x" * 10}), ModelLimits())


def test_check_plan_limits_rejects_non_json_numbers() -> None:
    plan = Plan.model_validate({"steps": [{"id": "s", "tool": "t", "args": {"x": float("inf")}}]})
    with pytest.raises(InvalidRequest) as caught:
        check_plan_limits(plan, ModelLimits())
    assert caught.value.field == "plan.steps[0].args"
