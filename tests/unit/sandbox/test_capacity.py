"""Capacity (the per-process cap on local runs: defaults, environment, validation) and RunSlots, the cap itself,
shared by threads and event loops. No worker processes here: tests/integration/sandbox/test_capacity.py has those."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest

from shared.sandbox import Capacity, Limits, ProcessSandbox
from shared.sandbox._slots import RunSlots

INSTANCE_MEMORY_BYTES = 2048 * 2**20  # infra/main.bicep instanceMemoryMB default


def test_defaults_fit_the_default_instance_with_room_for_the_host() -> None:
    capacity = Capacity()
    budget = capacity.max_concurrent_runs * Limits().memory_bytes
    assert budget <= INSTANCE_MEMORY_BYTES - 512 * 2**20
    assert 0 < capacity.queue_wait_seconds <= Limits().wall_seconds
    assert capacity.retry_policy() == {"first_interval_ms": 5000, "max_attempts": 5}


def test_capacity_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Capacity().max_concurrent_runs = 16  # type: ignore[misc]


def test_from_env_reads_the_four_settings() -> None:
    capacity = Capacity.from_env({
        "WEFT_SANDBOX_MAX_CONCURRENT_RUNS": "16", "WEFT_SANDBOX_QUEUE_WAIT_SECONDS": "2.5",
        "WEFT_SANDBOX_RETRY_INTERVAL_MS": "250", "WEFT_SANDBOX_RETRY_ATTEMPTS": "9",
    })
    assert capacity == Capacity(max_concurrent_runs=16, queue_wait_seconds=2.5, retry_interval_ms=250,
                                retry_attempts=9)
    assert Capacity.from_env({}) == Capacity()
    assert Capacity.from_env({"WEFT_SANDBOX_MAX_CONCURRENT_RUNS": ""}) == Capacity()


@pytest.mark.parametrize(("setting", "value"), [
    ("WEFT_SANDBOX_MAX_CONCURRENT_RUNS", "0"),
    ("WEFT_SANDBOX_MAX_CONCURRENT_RUNS", "-3"),
    ("WEFT_SANDBOX_MAX_CONCURRENT_RUNS", "two"),
    ("WEFT_SANDBOX_QUEUE_WAIT_SECONDS", "0"),
    ("WEFT_SANDBOX_QUEUE_WAIT_SECONDS", "-1.5"),
    ("WEFT_SANDBOX_RETRY_INTERVAL_MS", "0"),
    ("WEFT_SANDBOX_RETRY_ATTEMPTS", "-1"),
], ids=["runs-zero", "runs-negative", "runs-not-a-number", "wait-zero", "wait-negative", "interval-zero",
        "attempts-negative"])
def test_from_env_rejects_zero_and_negative_values_naming_the_setting(setting: str, value: str) -> None:
    with pytest.raises(ValueError, match=setting):
        Capacity.from_env({setting: value})


@pytest.mark.parametrize(("field", "setting"), [
    ("max_concurrent_runs", "WEFT_SANDBOX_MAX_CONCURRENT_RUNS"),
    ("queue_wait_seconds", "WEFT_SANDBOX_QUEUE_WAIT_SECONDS"),
    ("retry_interval_ms", "WEFT_SANDBOX_RETRY_INTERVAL_MS"),
    ("retry_attempts", "WEFT_SANDBOX_RETRY_ATTEMPTS"),
], ids=["runs", "wait", "interval", "attempts"])
def test_direct_construction_rejects_zero_naming_the_setting(field: str, setting: str) -> None:
    with pytest.raises(ValueError, match=setting):
        Capacity(**{field: 0})


def test_the_sandbox_takes_its_cap_from_the_capacity() -> None:
    sandbox = ProcessSandbox(capacity=Capacity(max_concurrent_runs=7))
    assert sandbox.capacity.max_concurrent_runs == 7
    assert (sandbox.runs_active, sandbox.runs_waiting) == (0, 0)
    assert ProcessSandbox().capacity == Capacity()


# ------------------------------------------------------------------------------------------------ RunSlots


def test_slots_refuse_a_limit_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RunSlots(0)


def test_waiters_are_served_first_come_first_served_on_one_loop() -> None:
    slots = RunSlots(1)
    order: list[int] = []

    async def holder(index: int, go: asyncio.Event) -> None:
        await slots.acquire(timeout=10)
        order.append(index)
        await go.wait()
        slots.release()

    async def scenario() -> None:
        go = asyncio.Event()
        tasks = []
        for index in range(4):
            tasks.append(asyncio.create_task(holder(index, go)))
            await asyncio.sleep(0)  # let it queue before the next one is created
        assert (slots.in_use, slots.waiting) == (1, 3)
        go.set()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    assert order == [0, 1, 2, 3]
    assert (slots.in_use, slots.waiting) == (0, 0)


def test_a_waiter_that_times_out_leaves_the_queue() -> None:
    slots = RunSlots(1)

    async def scenario() -> None:
        await slots.acquire(timeout=1)
        with pytest.raises(TimeoutError):
            await slots.acquire(timeout=0.05)
        assert (slots.in_use, slots.waiting) == (1, 0)
        slots.release()
        await slots.acquire(timeout=0.05)  # the slot is free again, nothing was leaked to the waiter
        slots.release()

    asyncio.run(scenario())
    assert (slots.in_use, slots.waiting) == (0, 0)


def test_a_cancelled_waiter_leaves_the_queue() -> None:
    slots = RunSlots(1)

    async def scenario() -> None:
        await slots.acquire(timeout=1)
        waiter = asyncio.create_task(slots.acquire(timeout=60))
        await asyncio.sleep(0)
        assert slots.waiting == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert slots.waiting == 0
        slots.release()

    asyncio.run(scenario())
    assert (slots.in_use, slots.waiting) == (0, 0)


def test_a_slot_handed_over_as_the_wait_ends_is_passed_on() -> None:
    slots = RunSlots(1)

    async def scenario() -> None:
        await slots.acquire(timeout=1)
        first = asyncio.create_task(slots.acquire(timeout=60))
        await asyncio.sleep(0)
        second = asyncio.create_task(slots.acquire(timeout=60))
        await asyncio.sleep(0)
        slots.release()  # hands the slot to `first`, whose wake-up is only scheduled ...
        first.cancel()  # ... when it gives up: the slot must go on to `second`
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, timeout=5)
        assert (slots.in_use, slots.waiting) == (1, 0)
        slots.release()

    asyncio.run(scenario())
    assert (slots.in_use, slots.waiting) == (0, 0)


def test_threads_each_with_their_own_loop_never_exceed_the_limit() -> None:
    slots = RunSlots(2)
    lock = threading.Lock()
    holders = {"now": 0, "most": 0}
    barrier = threading.Barrier(6)

    async def hold() -> None:
        await slots.acquire(timeout=30)
        try:
            with lock:
                holders["now"] += 1
                holders["most"] = max(holders["most"], holders["now"])
            await asyncio.sleep(0.01)
            with lock:
                holders["now"] -= 1
        finally:
            slots.release()

    def worker() -> None:
        barrier.wait(timeout=30)
        for _ in range(5):
            asyncio.run(hold())

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert holders == {"now": 0, "most": 2}
    assert (slots.in_use, slots.waiting) == (0, 0)


def test_release_without_acquire_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="more often"):
        RunSlots(1).release()
