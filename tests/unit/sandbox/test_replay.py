"""Durable replay through the process sandbox, driven the way the orchestrator drives it (steps + a record)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from shared.errors import SandboxLimitExceeded, SandboxViolation
from shared.sandbox import Limits, PendingCall, ProcessSandbox, RecordedCall, ReplayStep, run_replay_step

CLOCK = "2025-01-01T00:00:00Z"

PROGRAM = """
import asyncio

async def score(city):
    weather = await get_weather(city)
    if weather["temp"] > 10:
        return (city, await get_flights(city, max_price=300))
    return (city, 0)

async def main():
    cities = await list_cities("europe")
    print("cities:", cities)
    results = await asyncio.gather(*[score(c) for c in cities])
    return dict(results)

asyncio.run(main())
"""
TOOLS: dict[str, Callable[..., Any]] = {
    "list_cities": lambda region: ["Oslo", "Paris", "Rome"],
    "get_weather": lambda city: {"temp": {"Oslo": 3, "Paris": 11, "Rome": 17}[city]},
    "get_flights": lambda city, max_price: {"Paris": 4, "Rome": 2}[city],
}


def execute(call: PendingCall) -> RecordedCall:
    """What the orchestrator's call_tool activity does, result or error."""
    try:
        return RecordedCall.succeeded(call, TOOLS[call.tool](*call.args, **call.kwargs))
    except Exception as exc:
        return RecordedCall.failed(call, f"{type(exc).__name__}: {exc}")


def drive(sandbox: ProcessSandbox, code: str, *, seed: int = 1, limits: Limits | None = None
          ) -> tuple[ReplayStep, list[list[str]]]:
    """Run steps until the code finishes; history goes through JSON like Durable stores it."""
    recorded: list[RecordedCall] = []
    rounds: list[list[str]] = []
    for _ in range(10):
        step = sandbox.step(code, list(TOOLS), recorded, limits, clock_iso=CLOCK, seed=seed)
        step = ReplayStep.from_dict(json.loads(json.dumps(step.to_dict())))
        if step.done:
            return step, rounds
        rounds.append([f"{c.call_id}:{c.tool}({', '.join(map(str, c.args))})" for c in step.calls])
        recorded += [RecordedCall.from_dict(json.loads(json.dumps(execute(c).to_dict()))) for c in step.calls]
    raise AssertionError("the code did not finish in 10 rounds")


def test_replay_runs_the_code_round_by_round_to_the_same_answer_as_inline(sandbox: ProcessSandbox) -> None:
    step, rounds = drive(sandbox, PROGRAM)
    assert rounds == [
        ["c1:list_cities(europe)"],
        ["c2:get_weather(Oslo)", "c3:get_weather(Paris)", "c4:get_weather(Rome)"],
        ["c5:get_flights(Paris)", "c6:get_flights(Rome)"],
    ]
    assert step.result == {"Oslo": 0, "Paris": 4, "Rome": 2}
    assert step.stdout == "cities: ['Oslo', 'Paris', 'Rome']\n"
    inline = sandbox.run(PROGRAM, TOOLS)
    assert inline.result == step.result and inline.stdout == step.stdout


def test_a_gather_of_ten_yields_ten_calls_in_one_step(sandbox: ProcessSandbox) -> None:
    code = "import asyncio\nawait asyncio.gather(*[get_weather(c) for c in ['Oslo', 'Paris'] * 5])"
    step = sandbox.step(code, list(TOOLS), [], clock_iso=CLOCK, seed=0)
    assert step.status == "pending"
    assert [c.call_id for c in step.calls] == [f"c{i}" for i in range(1, 11)]


def test_the_same_step_gives_the_same_calls_every_time(sandbox: ProcessSandbox) -> None:
    code = "import random\nawait get_weather(random.choice(['Oslo', 'Paris', 'Rome']))"
    steps = [sandbox.step(code, list(TOOLS), [], clock_iso=CLOCK, seed=3).to_dict() for _ in range(3)]
    assert steps[0] == steps[1] == steps[2]


def test_changing_the_record_is_a_divergence_error(sandbox: ProcessSandbox) -> None:
    first = sandbox.step(PROGRAM, list(TOOLS), [], clock_iso=CLOCK, seed=1)
    forged = [RecordedCall("c1", "get_weather", ["Oslo"], {}, result={"temp": 1})]
    with pytest.raises(SandboxViolation, match="replay diverged at tool call c1"):
        sandbox.step(PROGRAM, list(TOOLS), forged, clock_iso=CLOCK, seed=1)
    assert first.calls[0].tool == "list_cities"


def test_a_different_seed_is_a_different_run(sandbox: ProcessSandbox) -> None:
    code = "import random\nawait get_weather(str(random.random()))"
    call_a = sandbox.step(code, list(TOOLS), [], clock_iso=CLOCK, seed=1).calls[0]
    call_b = sandbox.step(code, list(TOOLS), [], clock_iso=CLOCK, seed=2).calls[0]
    assert call_a.args != call_b.args
    recorded = [RecordedCall.succeeded(call_a, {"temp": 1})]
    with pytest.raises(SandboxViolation, match="replay diverged"):
        sandbox.step(code, list(TOOLS), recorded, clock_iso=CLOCK, seed=2)


def test_failed_calls_reach_the_code_as_tool_errors(sandbox: ProcessSandbox) -> None:
    code = "try:\n    await get_weather('Atlantis')\nexcept ToolError as e:\n    result = 'no data: ' + str(e)"
    step, rounds = drive(sandbox, code)
    assert rounds == [["c1:get_weather(Atlantis)"]]
    assert step.result == "no data: get_weather failed: KeyError: 'Atlantis'"


def test_code_errors_finish_the_replay_with_an_error(sandbox: ProcessSandbox) -> None:
    step, _ = drive(sandbox, "w = await get_weather('Oslo')\nw['humidity']")
    assert step.done and step.error is not None and step.error.type == "KeyError"


def test_the_tool_call_limit_holds_across_steps(sandbox: ProcessSandbox) -> None:
    code = "for c in ['Oslo', 'Paris', 'Rome']:\n    await get_weather(c)"
    with pytest.raises(SandboxLimitExceeded, match="more than 2 tool calls"):
        drive(sandbox, code, limits=Limits(max_tool_calls=2))


def test_policy_violations_are_raised_before_any_step_runs(sandbox: ProcessSandbox) -> None:
    with pytest.raises(SandboxViolation, match="import of module 'os'"):
        sandbox.step("import os", list(TOOLS), [], clock_iso=CLOCK, seed=0)


def test_module_level_run_replay_step_is_the_default_sandbox() -> None:
    step = run_replay_step("await ping()", ["ping"], [], clock_iso=CLOCK, seed=0)
    assert [c.to_dict() for c in step.calls] == [{"call_id": "c1", "tool": "ping", "args": [], "kwargs": {}}]
    done = run_replay_step("await ping()", ["ping"], [RecordedCall.succeeded(step.calls[0], "pong")],
                           clock_iso=CLOCK, seed=0)
    assert (done.status, done.result) == ("finished", "pong")
