"""The parent/worker wire (frames, JSON-safe values) and the deterministic virtual event loop."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import fractions
import math
import os
import time
from collections.abc import Iterator

import pytest

from shared.sandbox import _wire
from shared.sandbox._loop import Deadlock, VirtualLoop


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    yield read_end, write_end
    os.close(read_end)
    os.close(write_end)


def test_frames_round_trip_over_a_pipe(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    message = {"t": "calls", "calls": [{"id": "c1", "tool": "t", "args": ["ø", 1.5], "kwargs": {}}]}
    _wire.write_frame(write_end, message)
    assert _wire.read_frame(read_end, 1024) == message


def test_oversized_frames_are_refused_before_reading_the_body(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    _wire.write_frame(write_end, {"t": "x", "blob": "a" * 500})
    with pytest.raises(_wire.FrameError, match="exceeds"):
        _wire.read_frame(read_end, 100)


@pytest.mark.parametrize(
    "body",
    [pytest.param(b"[1, 2]", id="not-an-object"), pytest.param(b"\xff\xfe", id="not-utf8"),
     pytest.param(b"{", id="truncated-json")],
)
def test_malformed_frames_raise_frame_error(body: bytes) -> None:
    with pytest.raises(_wire.FrameError):
        _wire.decode(body)


def test_a_channel_closed_mid_frame_raises_frame_error() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"\x00\x00")
    os.close(write_end)
    try:
        with pytest.raises(_wire.FrameError, match="closed"):
            _wire.read_frame(read_end, 100)
    finally:
        os.close(read_end)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param((1, "a", None, True), [1, "a", None, True], id="tuple"),
        pytest.param({"b", "a"}, ["a", "b"], id="set-sorted"),
        pytest.param({1: "x"}, {"1": "x"}, id="int-keys"),
        pytest.param(dt.datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05", id="datetime"),
        pytest.param(dt.timedelta(minutes=1), 60.0, id="timedelta"),
        pytest.param(decimal.Decimal("1.10"), "1.10", id="decimal"),
        pytest.param(fractions.Fraction(1, 3), "1/3", id="fraction"),
        pytest.param(math.inf, "Infinity", id="infinity"),
        pytest.param(b"bytes", "bytes", id="bytes"),
    ],
)
def test_values_become_plain_json(value: object, expected: object) -> None:
    assert _wire.to_json_safe(value, strict=True) == expected


def test_unknown_objects_are_an_error_for_tools_and_a_repr_for_results() -> None:
    class Thing:
        def __repr__(self) -> str:
            return "<thing>"

    with pytest.raises(TypeError, match="cannot be sent to a tool"):
        _wire.to_json_safe([Thing()], strict=True)
    assert _wire.to_json_safe([Thing()], strict=False) == ["<thing>"]


def test_self_referencing_values_are_refused() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="nested more than"):
        _wire.to_json_safe(loop, strict=False)


def _loop_without_tools() -> VirtualLoop:
    return VirtualLoop(lambda: False)


def test_sleep_uses_virtual_time_and_costs_no_wall_time() -> None:
    loop = _loop_without_tools()

    async def main() -> float:
        await asyncio.gather(asyncio.sleep(3600), asyncio.sleep(7200))
        return loop.time()

    started = time.perf_counter()
    assert loop.run_until_complete(main()) == 7200
    assert time.perf_counter() - started < 1.0


def test_tasks_run_in_a_deterministic_order() -> None:
    def run_once() -> list[str]:
        loop = _loop_without_tools()
        order: list[str] = []

        async def worker(name: str, delays: list[float]) -> None:
            for delay in delays:
                await asyncio.sleep(delay)
                order.append(f"{name}@{loop.time()}")

        async def main() -> None:
            await asyncio.gather(worker("a", [0, 1, 1]), worker("b", [0, 0.5, 1.5]), worker("c", [2]))

        loop.run_until_complete(main())
        return order

    first = run_once()
    assert first == run_once()
    assert first[:2] == ["a@0.0", "b@0.0"]


def test_wait_for_times_out_in_virtual_time() -> None:
    loop = _loop_without_tools()

    async def main() -> str:
        try:
            await asyncio.wait_for(asyncio.sleep(10), timeout=2)
        except TimeoutError:
            return f"timed out at {loop.time()}"
        return "finished"

    assert loop.run_until_complete(main()) == "timed out at 2.0"


def test_waiting_on_nothing_is_a_deadlock_not_a_hang() -> None:
    loop = _loop_without_tools()

    async def main() -> None:
        await asyncio.Event().wait()

    with pytest.raises(Deadlock, match="can never happen"):
        loop.run_until_complete(main())


def test_the_idle_hook_is_asked_before_time_advances() -> None:
    events: list[str] = []
    futures: list[asyncio.Future[str]] = []

    def on_idle() -> bool:
        if futures:
            events.append(f"idle@{loop.time()}")
            futures.pop().set_result("tool result")
            return True
        return False

    loop = VirtualLoop(on_idle)

    async def main() -> tuple[str, float]:
        future = loop.create_future()
        futures.append(future)
        sleeper = asyncio.ensure_future(asyncio.sleep(5))
        value = await future
        await sleeper
        return value, loop.time()

    assert loop.run_until_complete(main()) == ("tool result", 5.0)
    assert events == ["idle@0.0"]


def test_nested_run_is_refused() -> None:
    loop = _loop_without_tools()

    async def inner() -> int:
        return 1

    async def main() -> None:
        coroutine = inner()
        try:
            loop.run_until_complete(coroutine)
        finally:
            coroutine.close()

    with pytest.raises(RuntimeError, match="already running"):
        loop.run_until_complete(main())
