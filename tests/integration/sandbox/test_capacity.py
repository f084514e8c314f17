"""The cap on concurrent local runs, on real worker processes: N + 1 runs with cap N never have more than N workers
alive, all finish, and a run that finds no slot within the queue wait fails with the retryable ``SandboxBusy``.

Each held run sits in a tool call (the tool runs here, in the parent) while its worker is alive; the tool counts the
zygote's children, which are the live workers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared.errors import SandboxBusy, is_retryable
from shared.sandbox import Capacity, ProcessSandbox

from .conftest import live_workers

CAP = 2
HELD = "value = await hold()\nresult = value * 10"


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


class Gate:
    """A tool that records how many runs are inside it and how many workers are alive, then waits to be opened."""

    def __init__(self, sandbox: ProcessSandbox) -> None:
        self.sandbox = sandbox
        self.opened = threading.Event()
        self._lock = threading.Lock()
        self.inside = 0
        self.most_inside = 0
        self.most_workers = 0
        self.entered = 0

    def enter(self) -> None:
        with self._lock:
            self.inside += 1
            self.entered += 1
            self.most_inside = max(self.most_inside, self.inside)
            self.most_workers = max(self.most_workers, len(live_workers(self.sandbox)))

    def leave(self) -> int:
        with self._lock:
            self.inside -= 1
            return self.entered

    def hold(self) -> int:
        self.enter()
        assert self.opened.wait(timeout=60), "the gate was never opened"
        return self.leave()

    async def hold_async(self) -> int:
        self.enter()
        await asyncio.to_thread(self.opened.wait, 60)
        return self.leave()


@pytest.fixture
def capped() -> Iterator[ProcessSandbox]:
    sandbox = ProcessSandbox(capacity=Capacity(max_concurrent_runs=CAP, queue_wait_seconds=60.0))
    assert sandbox.zygote_pid > 0
    yield sandbox
    sandbox.close()


def test_threads_n_plus_one_runs_with_cap_n_keep_n_workers_and_all_finish(capped: ProcessSandbox) -> None:
    gate = Gate(capped)
    results: dict[int, Any] = {}

    def caller(index: int) -> None:  # a sync caller: each call runs on its own event loop in its own thread
        results[index] = capped.run(HELD, {"hold": gate.hold}).result

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(CAP + 1)]
    for thread in threads:
        thread.start()
    wait_until(lambda: (gate.inside == CAP and capped.runs_waiting == 1) or gate.inside > CAP,
               "the cap is full and one run waits")
    assert gate.inside == CAP and len(live_workers(capped)) == CAP
    assert capped.runs_active == CAP
    gate.opened.set()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == list(range(CAP + 1))
    assert all(value is not None and value % 10 == 0 for value in results.values())
    assert gate.most_inside == CAP and gate.most_workers <= CAP
    assert (capped.runs_active, capped.runs_waiting) == (0, 0)


def test_one_event_loop_n_plus_one_runs_with_cap_n_keep_n_workers_and_all_finish(capped: ProcessSandbox) -> None:
    gate = Gate(capped)

    async def scenario() -> list[Any]:
        runs = [asyncio.create_task(capped.run_async(HELD, {"hold": gate.hold_async})) for _ in range(CAP + 1)]
        while not (gate.inside == CAP and capped.runs_waiting == 1) and gate.inside <= CAP:
            assert not any(run.done() for run in runs), [run.exception() for run in runs if run.done()]
            await asyncio.sleep(0.01)
        assert gate.inside == CAP and len(live_workers(capped)) == CAP
        gate.opened.set()
        return [(await run).result for run in runs]

    results = asyncio.run(scenario())
    assert len(results) == CAP + 1 and all(value % 10 == 0 for value in results)
    assert gate.most_inside == CAP and gate.most_workers <= CAP
    assert (capped.runs_active, capped.runs_waiting) == (0, 0)


def _replay_step(sandbox: ProcessSandbox) -> Any:
    return sandbox.step("result = 6 * 7", [], [], clock_iso="2025-01-01T00:00:00", seed=1)


def _inline_from_a_loop(sandbox: ProcessSandbox) -> Any:
    return asyncio.run(sandbox.run_async("result = 6 * 7", {}))


@pytest.mark.parametrize("attempt", [_replay_step, _inline_from_a_loop], ids=["sync-replay-step", "async-inline"])
def test_a_run_that_waits_longer_than_the_queue_wait_fails_retryably_and_loses_nothing(
    attempt: Callable[[ProcessSandbox], Any],
) -> None:
    sandbox = ProcessSandbox(capacity=Capacity(max_concurrent_runs=1, queue_wait_seconds=0.3))
    try:
        gate = Gate(sandbox)
        held: dict[str, Any] = {}
        holder = threading.Thread(target=lambda: held.update(result=sandbox.run(HELD, {"hold": gate.hold}).result))
        holder.start()
        wait_until(lambda: gate.inside == 1, "the only slot is taken")
        started = time.monotonic()
        with pytest.raises(SandboxBusy) as caught:
            attempt(sandbox)
        waited = time.monotonic() - started
        assert 0.3 <= waited < 10
        assert is_retryable(caught.value) and caught.value.code == "sandbox_busy"
        assert "WEFT_SANDBOX_MAX_CONCURRENT_RUNS" in caught.value.message
        assert "WEFT_SANDBOX_QUEUE_WAIT_SECONDS" in caught.value.message
        assert sandbox.runs_waiting == 0 and len(live_workers(sandbox)) == 1, "the refused run started nothing"
        gate.opened.set()
        holder.join(timeout=60)
        assert held == {"result": 10}, "the run holding the slot finished normally"
        assert sandbox.runs_active == 0
        assert _replay_step(sandbox).result == 42, "the slot came back: a later attempt runs"
    finally:
        gate.opened.set()
        sandbox.close()
