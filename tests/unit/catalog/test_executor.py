"""The tool executor: validation, failures as results, retryability, timeouts, sizes, keys, concurrency, breaker."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from shared.catalog.breaker import BreakerRecord, BreakerSettings, BreakerState, CircuitBreaker, MemoryBreakerStore
from shared.catalog.catalog import Catalog, Tool
from shared.catalog.executor import ToolExecutor, ToolSettings, current_call, retryable
from shared.concurrency import CrossLoopSemaphore
from shared.errors import InvalidRequest, RunCanceled, ToolFailed, UpstreamUnavailable
from shared.models import ToolCall, ToolResult, ToolSpec


def call(tool: str, run_id: str = "run-1", step_id: str = "s1", **args: Any) -> ToolCall:
    return ToolCall(run_id=run_id, step_id=step_id, tool=tool, args=args)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Reading(BaseModel):
    value: float
    at: datetime


def make_catalog() -> Catalog:
    catalog = Catalog()

    @catalog.tool()
    def add(a: float, b: float) -> float:
        """Add."""
        return a + b

    @catalog.tool()
    def reading() -> dict[str, Any]:
        """A result that needs JSON conversion."""
        return {"reading": Reading(value=1.5, at=datetime(2026, 1, 2, tzinfo=UTC)), "pair": (1, 2)}

    @catalog.tool()
    def blob(size: int) -> str:
        """A big result."""
        return "é" * size

    @catalog.tool()
    def not_json() -> object:
        """Returns something JSON cannot hold."""
        return object()

    @catalog.tool()
    def keyed(idempotency_key: str = "") -> dict[str, Any]:
        """Echo the key the executor passes and the current call."""
        current = current_call.get()
        return {"param": idempotency_key, "var": current.idempotency_key if current else None}

    @catalog.tool()
    async def keyed_async() -> dict[str, Any]:
        """Async tools see the current call too."""
        current = current_call.get()
        return {"var": current.idempotency_key if current else None, "attempt": current.attempt if current else 0}

    @catalog.tool(timeout_s=0.05)
    async def hang() -> None:
        """Never answers."""
        await asyncio.Event().wait()

    @catalog.tool()
    async def raises_timeout() -> None:
        """Its own client timed out."""
        raise TimeoutError("upstream read timed out")

    catalog.add(Tool(ToolSpec(name="spec_only")))
    return catalog


CATALOG = make_catalog()


# ----------------------------------------------------------------------------------------------- settings


def test_settings_from_env() -> None:
    defaults = ToolSettings.from_env({})
    assert (defaults.timeout_s, defaults.max_result_bytes, defaults.max_concurrency) == (30.0, 256 * 1024, 32)
    assert defaults.breaker == BreakerSettings()
    settings = ToolSettings.from_env(
        {
            "WEFT_TOOL_TIMEOUT_S": "2.5",
            "WEFT_TOOL_MAX_RESULT_BYTES": "1000",
            "WEFT_TOOL_MAX_CONCURRENCY": "3",
            "WEFT_TOOL_CONCURRENCY": "slow=1, search.web=4",
            "WEFT_BREAKER_FAILURE_THRESHOLD": "9",
            "WEFT_CANCEL_CHECK_THREADS": "2",
            "WEFT_CANCEL_CHECK_TIMEOUT_S": "0.75",
        }
    )
    assert settings.timeout_s == 2.5 and settings.max_result_bytes == 1000 and settings.max_concurrency == 3
    assert (defaults.cancel_check_threads, defaults.cancel_check_timeout_s) == (8, 5.0)
    assert (settings.cancel_check_threads, settings.cancel_check_timeout_s) == (2, 0.75)
    assert settings.concurrency == {"slow": 1, "search.web": 4}
    assert settings.breaker.failure_threshold == 9


@pytest.mark.parametrize("raw", ["slow", "slow=0", "slow=x", "=2x"], ids=["no-value", "zero", "not-int", "junk"])
def test_bad_concurrency_setting(raw: str) -> None:
    with pytest.raises(ValueError, match="WEFT_TOOL_CONCURRENCY"):
        ToolSettings.from_env({"WEFT_TOOL_CONCURRENCY": raw})


def test_concurrency_precedence() -> None:
    settings = ToolSettings(max_concurrency=8, concurrency={"a": 2})
    assert settings.concurrency_for(ToolSpec(name="a", max_concurrency=5)) == 2
    assert settings.concurrency_for(ToolSpec(name="b", max_concurrency=5)) == 5
    assert settings.concurrency_for(ToolSpec(name="c")) == 8


# ----------------------------------------------------------------------------------------------- results


def test_success_returns_json_values() -> None:
    executor = ToolExecutor(CATALOG)
    result = asyncio.run(executor.execute(call("add", a=1, b=2.5)))
    assert result.ok and result.value == 3.5 and result.error is None
    assert result.size_bytes == 3 and not result.truncated and result.latency_ms > 0
    converted = asyncio.run(executor.execute(call("reading"))).value
    assert converted == {"reading": {"value": 1.5, "at": "2026-01-02T00:00:00Z"}, "pair": [1, 2]}
    assert ToolResult.model_validate_json(asyncio.run(executor.execute(call("reading"))).model_dump_json()).ok


@pytest.mark.parametrize(
    ("the_call", "code", "field", "fragment"),
    [
        pytest.param(call("nope"), "tool_not_found", None, "unknown tool 'nope'", id="unknown-tool"),
        pytest.param(call("ad", a=1, b=2), "tool_not_found", None, "did you mean 'add'", id="close-name"),
        pytest.param(call("spec_only"), "not_configured", None, "no implementation", id="spec-only"),
        pytest.param(call("add", a=1), "tool_arguments_invalid", "args.b", "missing required argument 'b'",
                     id="missing-arg"),
        pytest.param(call("add", a="1", b=2), "tool_arguments_invalid", "args.a", "'1' is not of type 'number'",
                     id="wrong-type"),
        pytest.param(call("add", a=1, b=2, c=3), "tool_arguments_invalid", "args.c", "unexpected argument 'c'",
                     id="unexpected-arg"),
        pytest.param(call("not_json"), "tool_failed", None, "not JSON", id="not-json-result"),
    ],
)
def test_failures_are_non_retryable_results(the_call: ToolCall, code: str, field: str | None, fragment: str) -> None:
    result = asyncio.run(ToolExecutor(CATALOG).execute(the_call))
    assert not result.ok and result.value is None
    assert result.error is not None
    assert (result.error.code, result.error.field, result.error.retryable) == (code, field, False)
    assert fragment in result.error.message


def test_timeout_is_a_retryable_result() -> None:
    result = asyncio.run(ToolExecutor(CATALOG).execute(call("hang")))
    assert result.error is not None
    assert result.error.code == "tool_timeout" and result.error.retryable
    assert result.error.message == "tool 'hang' did not answer within 0.05 s"


def test_default_timeout_applies_when_the_spec_has_none() -> None:
    catalog = Catalog()

    @catalog.tool()
    async def wait_forever() -> None:
        """Never answers."""
        await asyncio.Event().wait()

    result = asyncio.run(ToolExecutor(catalog, settings=ToolSettings(timeout_s=0.02)).execute(call("wait_forever")))
    assert result.error is not None and result.error.code == "tool_timeout"


def test_a_tool_raising_timeout_error_is_not_an_executor_timeout() -> None:
    result = asyncio.run(ToolExecutor(CATALOG).execute(call("raises_timeout")))
    assert result.error is not None
    assert result.error.code == "tool_failed" and result.error.retryable
    assert result.error.message == "TimeoutError: upstream read timed out"


@pytest.mark.parametrize(
    ("exc", "side_effects", "idempotent", "code", "expected"),
    [
        pytest.param(ToolFailed("down"), False, True, "tool_failed", True, id="tool-failed-pure"),
        pytest.param(UpstreamUnavailable("503"), False, False, "upstream_unavailable", True, id="upstream-pure"),
        pytest.param(ConnectionError("reset"), False, True, "tool_failed", True, id="connection-error"),
        pytest.param(ValueError("bad"), False, True, "tool_failed", False, id="value-error"),
        pytest.param(InvalidRequest("no such city", field="args.city"), False, True, "invalid_request", False,
                     id="caller-fault"),
        pytest.param(ToolFailed("down"), True, True, "tool_failed", True, id="side-effects-idempotent"),
        pytest.param(ToolFailed("down"), True, False, "tool_failed", False, id="side-effects-not-idempotent"),
        pytest.param(ConnectionError("reset"), True, False, "tool_failed", False, id="unsafe-to-repeat"),
    ],
)
def test_retryability(exc: Exception, side_effects: bool, idempotent: bool, code: str, expected: bool) -> None:
    catalog = Catalog()

    def failing() -> None:
        """Fails."""
        raise exc

    catalog.register(failing, side_effects=side_effects, idempotent=idempotent)
    result = asyncio.run(ToolExecutor(catalog).execute(call("failing")))
    assert result.error is not None
    assert (result.error.code, result.error.retryable) == (code, expected)
    spec = catalog.get("failing").spec
    assert retryable(exc, spec) is expected


def test_retryable_without_a_spec_follows_errors_module() -> None:
    assert retryable(ToolFailed("x"), None) and not retryable(KeyError("x"), None)


# ----------------------------------------------------------------------------------------------- sizes


class MemorySink:
    def __init__(self, fail: bool = False) -> None:
        self.stored: dict[str, bytes] = {}
        self.fail = fail

    async def put(self, call: ToolCall, payload: bytes) -> str:
        if self.fail:
            raise OSError("blob storage down")
        ref = f"payloads/{call.run_id}/{call.step_id}.json"
        self.stored[ref] = payload
        return ref


def test_large_results_are_truncated_with_their_size() -> None:
    executor = ToolExecutor(CATALOG, settings=ToolSettings(max_result_bytes=101))
    small = asyncio.run(executor.execute(call("blob", size=49)))  # 2 quotes + 98 bytes
    assert small.ok and not small.truncated and small.size_bytes == 100
    big = asyncio.run(executor.execute(call("blob", size=100)))
    assert big.ok and big.truncated and big.blob_ref is None
    assert big.size_bytes == 202
    assert isinstance(big.value, str) and big.value == '"' + "é" * 50  # cut at a character boundary
    assert len(big.value.encode()) <= 101


def test_large_results_go_to_the_sink() -> None:
    sink = MemorySink()
    executor = ToolExecutor(CATALOG, settings=ToolSettings(max_result_bytes=10), result_sink=sink)
    result = asyncio.run(executor.execute(call("blob", run_id="r9", step_id="s2", size=20)))
    assert result.truncated and result.blob_ref == "payloads/r9/s2.json"
    assert json.loads(sink.stored["payloads/r9/s2.json"]) == "é" * 20
    failing = ToolExecutor(CATALOG, settings=ToolSettings(max_result_bytes=10), result_sink=MemorySink(fail=True))
    fallback = asyncio.run(failing.execute(call("blob", size=20)))
    assert fallback.ok and fallback.truncated and fallback.blob_ref is None


# ----------------------------------------------------------------------------------------------- idempotency keys


def test_tools_receive_the_idempotency_key_both_ways() -> None:
    executor = ToolExecutor(CATALOG)
    sync_value = asyncio.run(executor.execute(call("keyed", run_id="r1", step_id="charge"))).value
    assert sync_value == {"param": "r1:charge", "var": "r1:charge"}
    retry = ToolCall(run_id="r1", step_id="charge", tool="keyed_async", attempt=3)
    assert asyncio.run(executor.execute(retry)).value == {"var": "r1:charge", "attempt": 3}
    assert current_call.get() is None


# ----------------------------------------------------------------------------------------------- concurrency


def run(executor: ToolExecutor, the_call: ToolCall) -> ToolResult:
    """One call from sync code, on a fresh event loop (as a sync activity or a thread would make it)."""
    return asyncio.run(executor.execute(the_call))


def _slots_of(executor: ToolExecutor, tool: str) -> CrossLoopSemaphore:
    """The executor's semaphore for ``tool`` (white-box: the counts of the module under test)."""
    return executor._limiter(executor.catalog.get(tool).spec)


def test_per_tool_concurrency_limit_in_one_loop() -> None:
    catalog = Catalog()
    gate = asyncio.Event()
    running = 0
    peak = 0

    @catalog.tool(max_concurrency=2)
    async def gated() -> int:
        """Waits for the gate."""
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1
        return peak

    executor = ToolExecutor(catalog)
    slots = _slots_of(executor, "gated")

    async def scenario() -> list[ToolResult]:
        tasks = [asyncio.create_task(executor.execute(call("gated", step_id=f"s{i}"))) for i in range(6)]
        for _ in range(20):  # let every task reach the tool or the limiter
            await asyncio.sleep(0)
        assert (running, slots.in_use, slots.waiting) == (2, 2, 4)
        gate.set()
        return await asyncio.gather(*tasks)

    results = asyncio.run(scenario())
    assert all(r.ok for r in results)
    assert peak == 2
    assert (slots.in_use, slots.waiting) == (0, 0)


def test_per_tool_concurrency_limit_across_threads() -> None:
    catalog = Catalog()
    gate = threading.Event()
    lock = threading.Lock()
    running = 0
    peak = 0

    def blocking() -> None:
        """Blocks a worker thread until the gate opens."""
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        gate.wait(10)
        with lock:
            running -= 1

    catalog.register(blocking)
    executor = ToolExecutor(catalog, settings=ToolSettings(concurrency={"blocking": 1}))
    slots = _slots_of(executor, "blocking")
    results: list[ToolResult] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(run(executor, call("blocking", step_id=f"s{i}"))))
        for i in range(3)
    ]
    for thread in threads:
        thread.start()
    assert _poll(lambda: (slots.in_use, slots.waiting) == (1, 2))
    gate.set()
    for thread in threads:
        thread.join(10)
    assert len(results) == 3 and all(r.ok for r in results)
    assert peak == 1


def _poll(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.002)
    return True


def test_a_succeeded_call_is_not_reported_failed_when_a_waiter_was_cut_off() -> None:
    """An inline run is cut off (its thread's event loop closed) while its call waits for the tool's only slot; the
    call holding the slot succeeds and must be reported as such, and the slot must go on to the next caller."""
    catalog = Catalog()
    gate = threading.Event()

    def slow() -> str:
        """Holds the slot until the gate opens."""
        gate.wait(10)
        return "done"

    catalog.register(slow)
    executor = ToolExecutor(catalog, settings=ToolSettings(concurrency={"slow": 1}))
    slots = _slots_of(executor, "slow")
    held: list[ToolResult] = []
    holder = threading.Thread(target=lambda: held.append(asyncio.run(executor.execute(call("slow", step_id="held")))))
    holder.start()
    assert _poll(lambda: slots.in_use == 1)

    cut_loop = asyncio.new_event_loop()
    cut_off = threading.Thread(target=cut_loop.run_forever)
    cut_off.start()
    waiting = asyncio.run_coroutine_threadsafe(executor.execute(call("slow", step_id="cut")), cut_loop)
    assert _poll(lambda: slots.waiting == 1)
    cut_loop.call_soon_threadsafe(cut_loop.stop)  # the run is cut off: its loop stops and closes, the call pending
    cut_off.join(10)
    cut_loop.close()

    gate.set()
    holder.join(10)
    assert [(r.ok, r.value, r.error) for r in held] == [(True, "done", None)]
    assert not waiting.done()
    assert (slots.in_use, slots.waiting) == (0, 0)
    later = asyncio.run(executor.execute(call("slow", step_id="later")))
    assert later.ok and later.value == "done"


# ----------------------------------------------------------------------------------------------- circuit breaker


def test_breaker_opens_rejects_and_closes() -> None:
    catalog = Catalog()
    healthy = False
    transitions: list[tuple[str, BreakerState, BreakerState]] = []

    def upstream(strict: bool = False) -> str:
        """Fails while the upstream is down."""
        if strict:
            raise InvalidRequest("bad input", field="args.strict")
        if not healthy:
            raise ConnectionError("connection refused")
        return "ok"

    catalog.register(upstream)
    clock = Clock()
    breaker = CircuitBreaker(
        MemoryBreakerStore(), BreakerSettings(failure_threshold=2, cooldown_s=10), clock=clock,
        on_transition=lambda *t: transitions.append(t),
    )
    executor = ToolExecutor(catalog, breaker)
    codes = [asyncio.run(executor.execute(call("upstream"))).error.code for _ in range(3)]  # type: ignore[union-attr]
    assert codes == ["tool_failed", "tool_failed", "circuit_open"]
    rejected = asyncio.run(executor.execute(call("upstream")))
    assert rejected.error is not None and rejected.error.retryable and "try again in 10 s" in rejected.error.message
    clock.now += 10
    healthy = True
    assert asyncio.run(executor.execute(call("upstream"))).value == "ok"
    assert [t[2] for t in transitions] == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    healthy = False
    asyncio.run(executor.execute(call("upstream")))
    for _ in range(3):  # the caller's mistakes never open the circuit, and show the tool is answering
        assert asyncio.run(executor.execute(call("upstream", strict=True))).error.code == "invalid_request"  # type: ignore[union-attr]
        assert asyncio.run(executor.execute(call("upstream", bogus=1))).error.code == "tool_arguments_invalid"  # type: ignore[union-attr]
    assert breaker.state("upstream") == BreakerRecord()


def test_permanent_tool_errors_do_not_count_against_the_circuit() -> None:
    catalog = Catalog()

    def buggy() -> None:
        """Raises a permanent error."""
        raise ValueError("unsupported region")

    catalog.register(buggy)
    breaker = CircuitBreaker(MemoryBreakerStore(), BreakerSettings(failure_threshold=1))
    executor = ToolExecutor(catalog, breaker)
    for _ in range(3):
        assert asyncio.run(executor.execute(call("buggy"))).error.retryable is False  # type: ignore[union-attr]
    assert breaker.state("buggy").state is BreakerState.CLOSED


def test_timeouts_count_as_breaker_failures() -> None:
    breaker = CircuitBreaker(MemoryBreakerStore(), BreakerSettings(failure_threshold=1))
    executor = ToolExecutor(CATALOG, breaker)
    assert asyncio.run(executor.execute(call("hang"))).error.code == "tool_timeout"  # type: ignore[union-attr]
    assert breaker.state("hang").state is BreakerState.OPEN


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ToolSettings().timeout_s = 1  # type: ignore[misc]


# ----------------------------------------------------------------------------------------------- gate


def test_a_gate_that_refuses_at_the_last_moment_stops_a_call_that_waited_for_its_slot() -> None:
    catalog = Catalog()
    release, started = threading.Event(), threading.Event()
    ran: list[int] = []

    @catalog.tool(max_concurrency=1)
    def post(n: int) -> int:
        """A side effect, one at a time."""
        ran.append(n)
        started.set()
        if n == 1:
            release.wait(5)
        return n

    store = MemoryBreakerStore()
    executor = ToolExecutor(catalog, breaker=CircuitBreaker(store, BreakerSettings(closed_cache_s=0.0)))
    canceled = threading.Event()
    asked: list[str] = []

    def gate() -> None:
        asked.append(threading.current_thread().name)
        if canceled.is_set():
            raise RunCanceled("the call was not run: its run was canceled")

    async def scenario() -> list[ToolResult]:
        first = asyncio.create_task(executor.execute(call("post", step_id="s1", n=1), gate=gate))
        assert await asyncio.to_thread(started.wait, 5)
        second = asyncio.create_task(executor.execute(call("post", step_id="s2", n=2), gate=gate))
        await asyncio.sleep(0.05)  # the second call waits for the tool's one slot; meanwhile the run is canceled
        canceled.set()
        release.set()
        return [await first, await second]

    first, second = asyncio.run(scenario())
    assert first.ok and first.value == 1
    assert not second.ok and second.error is not None and second.error.code == RunCanceled.code
    assert not second.error.retryable and ran == [1]
    assert store.get("post") == BreakerRecord()  # a refusal says nothing of the tool's health
    assert len(asked) == 2 and all(name != threading.main_thread().name for name in asked)  # in the tool's thread


def test_an_async_tool_is_gated_by_the_executor_once() -> None:
    catalog = Catalog()
    ran: list[bool] = []

    @catalog.tool()
    async def notify() -> str:
        """An async side effect."""
        ran.append(True)
        return "sent"

    executor = ToolExecutor(catalog)
    asked: list[bool] = []

    def refusing() -> None:
        asked.append(True)
        raise RunCanceled("the call was not run: its run was canceled")

    result = asyncio.run(executor.execute(call("notify"), gate=refusing))
    assert (result.ok, result.error.code if result.error else None, ran, asked) == (False, "canceled", [], [True])
    passed = asyncio.run(executor.execute(call("notify"), gate=lambda: None))
    assert passed.ok and passed.value == "sent" and ran == [True]


def test_a_gate_that_cannot_tell_is_a_retryable_not_run_without_its_storage_error_text() -> None:
    catalog = Catalog()
    ran: list[bool] = []

    @catalog.tool(side_effects=True, idempotent=False)
    def post() -> str:
        """A non-idempotent side effect."""
        ran.append(True)
        return "posted"

    store = MemoryBreakerStore()
    executor = ToolExecutor(catalog, breaker=CircuitBreaker(store, BreakerSettings(closed_cache_s=0.0)))

    def storage_down() -> None:
        raise ConnectionError("https://account.blob.core.windows.net/payloads/journal/run-1/canceled refused")

    result = asyncio.run(executor.execute(call("post"), gate=storage_down))
    assert not result.ok and result.error is not None and not ran
    assert (result.error.code, result.error.retryable) == ("cancel_check_unavailable", True)  # nothing ran: retry
    assert "ConnectionError" in result.error.message and "blob.core" not in result.error.message
    assert store.get("post") == BreakerRecord()  # the journal's storage is down, not the tool


def test_a_refused_call_gives_back_the_half_open_trial_it_was_granted() -> None:
    catalog = Catalog()

    @catalog.tool(side_effects=True)
    def post() -> str:
        """A side effect."""
        return "posted"

    clock = Clock()
    store = MemoryBreakerStore()
    settings = BreakerSettings(failure_threshold=1, cooldown_s=10.0, trial_lease_s=60.0, closed_cache_s=0.0)
    breaker = CircuitBreaker(store, settings, clock=clock)
    executor = ToolExecutor(catalog, breaker=breaker)
    breaker.record_failure("post")
    clock.now += 10.0  # the cooldown is over: the next caller gets the trial

    def canceled() -> None:
        raise RunCanceled("the call was not run: its run was canceled")

    refused = asyncio.run(executor.execute(call("post", run_id="run-canceled"), gate=canceled))
    assert refused.error is not None and refused.error.code == "canceled"
    assert store.get("post").state is BreakerState.HALF_OPEN and store.get("post").trial_until == 0.0
    other = asyncio.run(executor.execute(call("post", run_id="run-2")))  # another run's call: the trial is its own
    assert other.ok and store.get("post") == BreakerRecord()


@pytest.mark.parametrize("sync", [pytest.param(True, id="sync-tool"), pytest.param(False, id="async-tool")])
def test_a_gate_slower_than_the_timeout_is_a_retryable_not_run_that_spares_the_breaker(sync: bool) -> None:
    catalog = Catalog()
    ran: list[bool] = []

    def post_sync() -> str:
        """A side effect."""
        ran.append(True)
        return "posted"

    async def post_async() -> str:
        """A side effect."""
        ran.append(True)
        return "posted"

    catalog.register(post_sync if sync else post_async, name="post", side_effects=True, timeout_s=0.1)
    clock = Clock()
    store = MemoryBreakerStore()
    settings = BreakerSettings(failure_threshold=1, cooldown_s=10.0, trial_lease_s=60.0, closed_cache_s=0.0)
    breaker = CircuitBreaker(store, settings, clock=clock)
    breaker.record_failure("post")
    clock.now += 10.0  # half-open: this call is granted the trial
    executor = ToolExecutor(catalog, breaker=breaker)
    answer = threading.Event()

    def slow_gate() -> None:  # the journal's storage answers after the call's timeout
        assert answer.wait(5)

    async def scenario() -> ToolResult:
        result = await executor.execute(call("post"), gate=slow_gate)
        answer.set()
        return result  # asyncio.run joins the worker threads: the gate's thread has gone on past it by then

    result = asyncio.run(scenario())
    assert not result.ok and result.error is not None and ran == []
    assert (result.error.code, result.error.retryable) == ("cancel_check_unavailable", True)
    assert "within its 0.1 s timeout" in result.error.message
    assert store.get("post").state is BreakerState.HALF_OPEN and store.get("post").trial_until == 0.0  # given back


@pytest.mark.parametrize("sync", [pytest.param(True, id="sync-tool"), pytest.param(False, id="async-tool")])
def test_a_tool_that_passed_its_gate_and_then_hangs_is_a_tool_timeout(sync: bool) -> None:
    catalog = Catalog()
    release = threading.Event()

    def post_sync() -> str:
        """A side effect that hangs."""
        release.wait(5)
        return "posted"

    async def post_async() -> str:
        """A side effect that hangs."""
        await asyncio.Event().wait()
        return "posted"

    catalog.register(post_sync if sync else post_async, name="post", side_effects=True, timeout_s=0.05)
    store = MemoryBreakerStore()
    executor = ToolExecutor(catalog, breaker=CircuitBreaker(store, BreakerSettings(closed_cache_s=0.0)))

    async def scenario() -> ToolResult:
        result = await executor.execute(call("post"), gate=lambda: None)
        release.set()
        return result

    result = asyncio.run(scenario())
    assert result.error is not None and (result.error.code, result.error.retryable) == ("tool_timeout", True)
    assert store.get("post").failures == 1  # the tool itself did not answer


def test_an_async_call_whose_timeout_ends_after_its_gate_answered_but_before_it_started_did_not_run() -> None:
    catalog = Catalog()
    ran: list[str] = []

    async def post(to: str) -> str:
        """Post a message."""
        ran.append(to)
        return "posted"

    catalog.register(post, name="post", side_effects=True, timeout_s=0.5)
    store = MemoryBreakerStore()
    executor = ToolExecutor(catalog, breaker=CircuitBreaker(store, BreakerSettings(closed_cache_s=0.0)))
    asked, loop_held, answered = threading.Event(), threading.Event(), threading.Event()
    asked_at: list[float] = []

    def gate() -> None:  # answers within the timeout, but only once the event loop is busy
        asked_at.append(time.monotonic())
        asked.set()
        assert loop_held.wait(5)
        answered.set()

    def hold_loop() -> None:  # blocking work on the loop from before the gate answers until past the call's deadline
        loop_held.set()
        assert answered.wait(5)
        time.sleep(max(0.0, asked_at[0] + 0.6 - time.monotonic()))  # the deadline was armed before the gate was asked

    async def busy() -> None:
        assert await asyncio.to_thread(asked.wait, 5)
        hold_loop()

    async def scenario() -> ToolResult:
        hog = asyncio.create_task(busy())
        result = await executor.execute(call("post", to="a"), gate=gate)
        await hog
        return result

    result = asyncio.run(scenario())
    assert result.error is not None
    assert (result.error.code, result.error.retryable) == ("cancel_check_unavailable", True)
    assert ran == [] and store.get("post").failures == 0


class _HeldPool(ThreadPoolExecutor):
    """A default executor of one thread that says when ``count`` tasks were queued after :meth:`arm`."""

    def __init__(self) -> None:
        super().__init__(1)
        self.count, self.queued = 0, asyncio.Event()  # set on the event loop, which submits

    def arm(self, count: int) -> None:
        self.count = count

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.count -= 1
        if self.count == 0:
            self.queued.set()
        return super().submit(fn, *args, **kwargs)


def test_a_sync_call_whose_timeout_ends_while_it_waits_for_a_thread_did_not_run_and_spares_the_breaker() -> None:
    catalog = Catalog()
    ran: list[str] = []
    asked: list[str] = []

    def post(to: str) -> str:
        """Post a message."""
        ran.append(to)
        return "posted"

    catalog.register(post, name="post", side_effects=True, timeout_s=0.2)
    store = MemoryBreakerStore()
    executor = ToolExecutor(catalog, breaker=CircuitBreaker(store, BreakerSettings(closed_cache_s=60.0)))
    pool = _HeldPool()

    async def scenario() -> ToolResult:
        asyncio.get_running_loop().set_default_executor(pool)
        warm = await executor.execute(call("post", step_id="w", to="w"), gate=lambda: None)  # the circuit is healthy
        assert warm.ok
        release = threading.Event()
        pool.arm(3)  # the holder, the call's thread, then the breaker's thread once the call's timeout has ended
        holder = asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
        the_call = asyncio.create_task(executor.execute(call("post", step_id="s", to="b"),
                                                        gate=lambda: asked.append("s")))
        await asyncio.wait_for(pool.queued.wait(), 10)
        release.set()
        await holder
        return await the_call

    result = asyncio.run(scenario())
    assert result.error is not None
    assert (result.error.code, result.error.retryable) == ("cancel_check_unavailable", True)
    assert ran == ["w"] and asked == []  # never asked, never started
    assert store.get("post").failures == 0
