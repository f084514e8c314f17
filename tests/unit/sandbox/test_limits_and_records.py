"""Limits (defaults, environment, validation) and the JSON contract of results, calls and replay steps."""

from __future__ import annotations

import dataclasses
import json

import pytest

from shared.sandbox import CodeError, CodeResult, Limits, PendingCall, RecordedCall, ReplayStep


def test_defaults_are_sane() -> None:
    limits = Limits()
    assert 0 < limits.cpu_seconds <= limits.wall_seconds
    assert limits.memory_bytes >= 128 * 1024 * 1024
    assert limits.stdout_bytes > 0 and limits.max_tool_calls > 0 and limits.max_result_bytes > 0


def test_limits_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Limits().cpu_seconds = 1  # type: ignore[misc]


def test_from_env_reads_every_weft_sandbox_setting() -> None:
    env = {
        "WEFT_SANDBOX_CPU_SECONDS": "1.5",
        "WEFT_SANDBOX_WALL_SECONDS": "4",
        "WEFT_SANDBOX_MEMORY_BYTES": "268435456",
        "WEFT_SANDBOX_STDOUT_BYTES": "100",
        "WEFT_SANDBOX_MAX_TOOL_CALLS": "7",
        "WEFT_SANDBOX_MAX_RESULT_BYTES": "2048",
        "WEFT_SANDBOX_MAX_ROUNDS": "3",
        "UNRELATED": "x",
    }
    limits = Limits.from_env(env)
    assert (limits.cpu_seconds, limits.wall_seconds, limits.memory_bytes) == (1.5, 4.0, 268435456)
    assert (limits.stdout_bytes, limits.max_tool_calls, limits.max_result_bytes, limits.max_rounds) == (100, 7, 2048, 3)
    assert limits.max_code_bytes == Limits().max_code_bytes


def test_from_env_without_settings_gives_the_defaults() -> None:
    assert Limits.from_env({}) == Limits()


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"WEFT_SANDBOX_CPU_SECONDS": "lots"}, id="not-a-number"),
        pytest.param({"WEFT_SANDBOX_MAX_TOOL_CALLS": "0"}, id="zero"),
        pytest.param({"WEFT_SANDBOX_MEMORY_BYTES": "-1"}, id="negative"),
    ],
)
def test_from_env_rejects_bad_values(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="WEFT_SANDBOX_"):
        Limits.from_env(env)


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ValueError, match="cpu_seconds"):
        Limits(cpu_seconds=0)


def test_limits_round_trip_through_json() -> None:
    limits = Limits(cpu_seconds=2.5, max_tool_calls=9)
    assert Limits.from_dict(json.loads(json.dumps(limits.to_dict()))) == limits
    with pytest.raises(ValueError, match="unknown sandbox limits: bogus"):
        Limits.from_dict({"bogus": 1})


def _json_round_trip(value: dict) -> dict:
    return json.loads(json.dumps(value))


CALL = PendingCall("c1", "get_weather", ["Oslo"], {"unit": "C"})


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(RecordedCall.succeeded(CALL, {"temp": 3, "tags": ["cold"]}), id="succeeded"),
        pytest.param(RecordedCall.failed(CALL, "ToolFailed: upstream 503"), id="failed"),
        pytest.param(RecordedCall.succeeded(CALL, None), id="returned-none"),
    ],
)
def test_recorded_calls_round_trip(record: RecordedCall) -> None:
    assert RecordedCall.from_dict(_json_round_trip(record.to_dict())) == record
    assert record.ok is (record.error is None)


def test_pending_call_round_trips() -> None:
    assert PendingCall.from_dict(_json_round_trip(CALL.to_dict())) == CALL


@pytest.mark.parametrize(
    "step",
    [
        pytest.param(ReplayStep.pending([CALL, PendingCall("c2", "get_weather", ["Paris"], {})]), id="pending"),
        pytest.param(ReplayStep.finished({"answer": 42}, "printed\n"), id="finished"),
        pytest.param(ReplayStep.finished(None, "", CodeError("ValueError", "bad", "Traceback…")), id="failed"),
    ],
)
def test_replay_steps_round_trip(step: ReplayStep) -> None:
    again = ReplayStep.from_dict(_json_round_trip(step.to_dict()))
    assert again == step
    assert again.done is (step.status == "finished")


def test_replay_step_rejects_an_unknown_status() -> None:
    with pytest.raises(ValueError, match="unknown replay step status"):
        ReplayStep.from_dict({"status": "sleeping"})


def test_code_result_round_trips() -> None:
    result = CodeResult(
        result=[1, "two"], stdout="hi\n", tool_calls=(RecordedCall.succeeded(CALL, 1),),
        error=CodeError("KeyError", "'x'", "Traceback…"),
    )
    assert CodeResult.from_dict(_json_round_trip(result.to_dict())) == result
    assert not result.ok
