"""CrossLoopSemaphore: one per-process cap shared by threads and event loops (tool concurrency, sandbox runs)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

from shared.concurrency import CrossLoopSemaphore


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CrossLoopSemaphore(0)


def test_waiters_are_served_first_come_first_served_on_one_loop() -> None:
    semaphore = CrossLoopSemaphore(1)
    order: list[int] = []

    async def holder(index: int, go: asyncio.Event) -> None:
        await semaphore.acquire()
        order.append(index)
        await go.wait()
        semaphore.release()

    async def scenario() -> None:
        go = asyncio.Event()
        tasks = []
        for index in range(4):
            tasks.append(asyncio.create_task(holder(index, go)))
            await asyncio.sleep(0)  # let it queue before the next one is created
        assert (semaphore.in_use, semaphore.waiting) == (1, 3)
        go.set()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    assert order == [0, 1, 2, 3]
    assert (semaphore.in_use, semaphore.waiting) == (0, 0)


def test_a_waiter_that_times_out_leaves_the_queue() -> None:
    semaphore = CrossLoopSemaphore(1)

    async def scenario() -> None:
        await semaphore.acquire()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await semaphore.acquire()
        assert (semaphore.in_use, semaphore.waiting) == (1, 0)
        semaphore.release()
        await asyncio.wait_for(semaphore.acquire(), 0.05)  # the slot is free again, nothing was leaked to the waiter
        semaphore.release()

    asyncio.run(scenario())
    assert (semaphore.in_use, semaphore.waiting) == (0, 0)


def test_a_cancelled_waiter_leaves_the_queue() -> None:
    semaphore = CrossLoopSemaphore(1)

    async def scenario() -> None:
        await semaphore.acquire()
        waiter = asyncio.create_task(semaphore.acquire())
        await asyncio.sleep(0)
        assert semaphore.waiting == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert semaphore.waiting == 0
        semaphore.release()

    asyncio.run(scenario())
    assert (semaphore.in_use, semaphore.waiting) == (0, 0)


def test_a_slot_handed_over_as_the_wait_ends_is_passed_on() -> None:
    semaphore = CrossLoopSemaphore(1)

    async def scenario() -> None:
        await semaphore.acquire()
        first = asyncio.create_task(semaphore.acquire())
        await asyncio.sleep(0)
        second = asyncio.create_task(semaphore.acquire())
        await asyncio.sleep(0)
        semaphore.release()  # hands the slot to `first`, whose wake-up is only scheduled ...
        first.cancel()  # ... when it gives up: the slot must go on to `second`
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, timeout=5)
        assert (semaphore.in_use, semaphore.waiting) == (1, 0)
        semaphore.release()

    asyncio.run(scenario())
    assert (semaphore.in_use, semaphore.waiting) == (0, 0)


def test_threads_each_with_their_own_loop_never_exceed_the_limit() -> None:
    semaphore = CrossLoopSemaphore(2)
    lock = threading.Lock()
    holders = {"now": 0, "most": 0}
    barrier = threading.Barrier(6)

    async def hold() -> None:
        await semaphore.acquire()
        try:
            with lock:
                holders["now"] += 1
                holders["most"] = max(holders["most"], holders["now"])
            await asyncio.sleep(0.01)
            with lock:
                holders["now"] -= 1
        finally:
            semaphore.release()

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
    assert (semaphore.in_use, semaphore.waiting) == (0, 0)


def test_release_without_acquire_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="more often"):
        CrossLoopSemaphore(1).release()


def test_a_waiter_whose_loop_was_closed_is_skipped() -> None:
    """A run cut off mid-wait leaves its waiter queued on a closed loop: release() passes over it, without failing
    the holder that releases, and the slot goes to the next live waiter (or back to the pool)."""
    semaphore = CrossLoopSemaphore(1)
    dead_loop = asyncio.new_event_loop()
    dead = threading.Thread(target=dead_loop.run_forever)
    dead.start()

    async def scenario() -> concurrent.futures.Future[None]:
        await semaphore.acquire()
        queued = asyncio.run_coroutine_threadsafe(semaphore.acquire(), dead_loop)
        for _ in range(1000):  # bounded: the other loop queues its waiter within a few switches
            if semaphore.waiting == 1:
                break
            await asyncio.to_thread(threading.Event().wait, 0.002)
        assert semaphore.waiting == 1
        dead_loop.call_soon_threadsafe(dead_loop.stop)
        await asyncio.to_thread(dead.join, 10)
        dead_loop.close()
        live = asyncio.create_task(semaphore.acquire())
        await asyncio.sleep(0)
        assert semaphore.waiting == 2
        semaphore.release()  # skips the dead waiter, wakes `live`
        async with asyncio.timeout(5):
            await live
        assert (semaphore.in_use, semaphore.waiting) == (1, 0)
        semaphore.release()
        return queued

    assert not asyncio.run(scenario()).done()
    assert (semaphore.in_use, semaphore.waiting) == (0, 0)


def test_acquire_without_a_timeout_waits_for_a_release_from_another_thread() -> None:
    semaphore = CrossLoopSemaphore(1)
    taken = threading.Event()
    done = threading.Event()

    async def holder() -> None:
        await semaphore.acquire()
        taken.set()
        await asyncio.to_thread(done.wait, 10)
        semaphore.release()

    thread = threading.Thread(target=asyncio.run, args=(holder(),))
    thread.start()
    assert taken.wait(10)

    async def second() -> int:
        waiting = asyncio.create_task(semaphore.acquire())
        await asyncio.sleep(0)
        queued = semaphore.waiting
        done.set()
        await waiting
        semaphore.release()
        return queued

    assert asyncio.run(second()) == 1
    thread.join(10)
    assert (semaphore.in_use, semaphore.waiting) == (0, 0)
