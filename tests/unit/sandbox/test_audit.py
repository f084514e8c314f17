"""The audit hook across the end of an embedded run (the remote backend's): ``Stop`` unwinds the run and the code
can catch it, so the hook must not be off for whatever the code runs next, nor for what it leaves behind."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Mapping
from typing import Any, NoReturn

import pytest

from shared.sandbox import Limits, _audit, _runtime, policy
from shared.sandbox._shims import World

# A string annotation evaluated by functools.singledispatch: code the AST check cannot see, the hook refuses ("exec").
DISPATCH = """
import functools
@functools.singledispatch
def f(x):
    return 'base'
def g(x: 'int'):
    return 'annotation-ran'
"""


class RecordingChannel(_runtime.EmbeddedChannel):
    """Every outcome the runtime ends the run with, also those after the first (which alone counts)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[dict[str, Any]] = []

    def finish(self, message: Mapping[str, Any]) -> NoReturn:
        self.messages.append(dict(message))
        super().finish(message)


def job(code: str) -> dict[str, Any]:
    return {"t": "job", "mode": "replay", "code": code, "tools": ["get"], "recorded": [],
            "limits": Limits().worker_view(), "clock": 0.0, "seed": 1}


def run_recording(code: str) -> RecordingChannel:
    """The run as :func:`shared.sandbox._runtime.run_embedded` drives it, keeping every outcome."""
    worker_policy = policy.worker_policy()
    channel = RecordingChannel()
    world = World(policy=worker_policy, static_modules=_runtime.prepare_static_modules(worker_policy))
    try:
        _runtime.Runtime(job(code), world=world, channel=channel).execute()
    except _runtime.Stop:
        pass
    finally:
        _audit.deactivate()
        asyncio.set_event_loop(None)
    return channel


@pytest.mark.parametrize(
    "first",
    [
        pytest.param("f.register(g)", id="audit-violation"),
        pytest.param("getattr(1, '__cl' + 'ass__')", id="guard-violation"),
        pytest.param("print('x' * 100_000)", id="limit"),
        pytest.param("get(1)", id="pending-tool-call"),
    ],
)
def test_code_that_catches_the_end_of_its_run_stays_audited(first: str) -> None:
    """Before, a violation reported by the hook turned it off: code catching the Stop ran the string annotation."""
    code = DISPATCH + f"try:\n    {first}\nexcept BaseException:\n    pass\n"
    code += "for _ in range(2):\n    try:\n        f.register(g)\n    except BaseException:\n        pass\nf(1)\n"
    channel = run_recording(code)
    assert channel.outcome is not None and channel.outcome == channel.messages[0]
    assert channel.outcome["t"] in ("violation", "limit", "pending")
    assert all("annotation-ran" not in str(message) for message in channel.messages), channel.messages
    assert (channel.messages[-1]["t"], channel.messages[-1]["result"]) == ("done", "base")


def test_code_that_catches_the_end_of_its_run_keeps_the_first_outcome() -> None:
    code = DISPATCH + "try:\n    f.register(g)\nexcept BaseException:\n    pass\nf.register(g)\nf(1)\n"
    outcome = _runtime.run_embedded(job(code), policy.worker_policy())
    assert outcome["t"] == "violation" and "code built from strings" in outcome["message"]


def test_what_the_code_leaves_suspended_runs_under_the_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pending step leaves the code's coroutine suspended; closing it runs its ``finally``. Before, that happened
    after the run, with the hook off: the string annotation was evaluated."""
    raised: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: raised.append(unraisable.exc_value))
    code = DISPATCH + (
        "async def main():\n    try:\n        await get(1)\n    finally:\n        f.register(g)\n"
        "        raise ValueError(f(1))\nawait main()\n"
    )
    outcome = _runtime.run_embedded(job(code), policy.worker_policy())
    assert outcome["t"] == "pending"
    assert [type(exc) for exc in raised] == [_runtime.Stop]


# Each generation's __del__ builds the next one in a new cycle (garbage only once __del__ returns), then runs the
# string annotation.
DEL_CHAIN = """
class Node:
    def __init__(self, generation):
        self.generation = generation
        self.me = self
    def __del__(self):
        if self.generation < 3:
            Node(self.generation + 1)
        f.register(g)
        raise ValueError(f(1))
Node(1)
get(1)
"""

CREATE_TASK = """
async def inner():
    try:
        await get(1)
    finally:
        f.register(g)
        raise ValueError(f(1))
async def main():
    asyncio.create_task(inner())
    await asyncio.sleep(0)
    get(2)
await main()
"""


@pytest.mark.parametrize(
    ("code", "finalizers"),
    [
        pytest.param(CREATE_TASK, 1, id="task-left-suspended"),
        pytest.param(DEL_CHAIN, 3, id="del-builds-more-garbage"),
    ],
)
def test_what_the_run_leaves_is_released_under_the_hook(
    monkeypatch: pytest.MonkeyPatch, code: str, finalizers: int
) -> None:
    """The run's leftovers must be garbage, and collected, before the hook is off. Before, a task the code created
    stayed reachable from the hook's world (its loop, the runtime's bound methods) and the asyncio policy, and one
    collection left the garbage a __del__ built: both ran the string annotation later, in a collection of this
    test, with the hook off."""
    raised: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: raised.append(unraisable.exc_value))
    outcome = _runtime.run_embedded(job(DISPATCH + code), policy.worker_policy())
    gc.collect()
    assert outcome["t"] == "pending"
    assert [type(exc) for exc in raised] == [_runtime.Stop] * finalizers, raised


def test_the_hook_refuses_events_after_the_run_is_released() -> None:
    """The finished run is unbound from the world the hook keeps: a refused event still ends what runs (Stop)."""
    worker_policy = policy.worker_policy()
    world = World(policy=worker_policy, static_modules=_runtime.prepare_static_modules(worker_policy))
    world.end_run(_runtime.Stop)
    _audit.install_audit_hook(world, None)
    try:
        with pytest.raises(_runtime.Stop):
            exec("1")  # any code object but the run's is refused
    finally:
        _audit.deactivate()
    loop = world.hooks.loop
    for callback in (lambda: world.hooks.violation("x"), world.hooks.clock,
                     lambda: loop.run_until_complete(loop.create_future())):
        with pytest.raises(_runtime.Stop):
            callback()
