"""The tool executor: validation, failures as results, retryability, timeouts, sizes, keys, concurrency, breaker."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from shared.catalog import executor as tools_module
from shared.catalog.breaker import BreakerRecord, BreakerSettings, BreakerState, CircuitBreaker, MemoryBreakerStore
from shared.catalog.catalog import Catalog, Tool
from shared.catalog.executor import ToolExecutor, ToolSettings, _Limiter, current_call, retryable
from shared.errors import InvalidRequest, ToolFailed, UpstreamUnavailable
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


def test_public_api_is_declared() -> None:
    assert set(tools_module.__all__) == {"ResultSink", "ToolExecutor", "ToolSettings", "current_call", "retryable"}


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
        }
    )
    assert settings.timeout_s == 2.5 and settings.max_result_bytes == 1000 and settings.max_concurrency == 3
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
    result = executor.execute_sync(call("add", a=1, b=2.5))
    assert result.ok and result.value == 3.5 and result.error is None
    assert result.size_bytes == 3 and not result.truncated and result.latency_ms > 0
    converted = executor.execute_sync(call("reading")).value
    assert converted == {"reading": {"value": 1.5, "at": "2026-01-02T00:00:00Z"}, "pair": [1, 2]}
    assert ToolResult.model_validate_json(executor.execute_sync(call("reading")).model_dump_json()).ok


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
    result = ToolExecutor(CATALOG).execute_sync(the_call)
    assert not result.ok and result.value is None
    assert result.error is not None
    assert (result.error.code, result.error.field, result.error.retryable) == (code, field, False)
    assert fragment in result.error.message


def test_timeout_is_a_retryable_result() -> None:
    result = ToolExecutor(CATALOG).execute_sync(call("hang"))
    assert result.error is not None
    assert result.error.code == "tool_timeout" and result.error.retryable
    assert result.error.message == "tool 'hang' did not answer within 0.05 s"


def test_default_timeout_applies_when_the_spec_has_none() -> None:
    catalog = Catalog()

    @catalog.tool()
    async def wait_forever() -> None:
        """Never answers."""
        await asyncio.Event().wait()

    result = ToolExecutor(catalog, settings=ToolSettings(timeout_s=0.02)).execute_sync(call("wait_forever"))
    assert result.error is not None and result.error.code == "tool_timeout"


def test_a_tool_raising_timeout_error_is_not_an_executor_timeout() -> None:
    result = ToolExecutor(CATALOG).execute_sync(call("raises_timeout"))
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
    result = ToolExecutor(catalog).execute_sync(call("failing"))
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
    small = executor.execute_sync(call("blob", size=49))  # 2 quotes + 98 bytes
    assert small.ok and not small.truncated and small.size_bytes == 100
    big = executor.execute_sync(call("blob", size=100))
    assert big.ok and big.truncated and big.blob_ref is None
    assert big.size_bytes == 202
    assert isinstance(big.value, str) and big.value == '"' + "é" * 50  # cut at a character boundary
    assert len(big.value.encode()) <= 101


def test_large_results_go_to_the_sink() -> None:
    sink = MemorySink()
    executor = ToolExecutor(CATALOG, settings=ToolSettings(max_result_bytes=10), result_sink=sink)
    result = executor.execute_sync(call("blob", run_id="r9", step_id="s2", size=20))
    assert result.truncated and result.blob_ref == "payloads/r9/s2.json"
    assert json.loads(sink.stored["payloads/r9/s2.json"]) == "é" * 20
    failing = ToolExecutor(CATALOG, settings=ToolSettings(max_result_bytes=10), result_sink=MemorySink(fail=True))
    fallback = failing.execute_sync(call("blob", size=20))
    assert fallback.ok and fallback.truncated and fallback.blob_ref is None


# ----------------------------------------------------------------------------------------------- idempotency keys


def test_tools_receive_the_idempotency_key_both_ways() -> None:
    executor = ToolExecutor(CATALOG)
    sync_value = executor.execute_sync(call("keyed", run_id="r1", step_id="charge")).value
    assert sync_value == {"param": "r1:charge", "var": "r1:charge"}
    retry = ToolCall(run_id="r1", step_id="charge", tool="keyed_async", attempt=3)
    assert executor.execute_sync(retry).value == {"var": "r1:charge", "attempt": 3}
    assert current_call.get() is None


def test_execute_sync_refuses_a_running_loop() -> None:
    async def inside() -> None:
        ToolExecutor(CATALOG).execute_sync(call("add", a=1, b=1))

    with pytest.raises(RuntimeError, match="await execute"):
        asyncio.run(inside())


# ----------------------------------------------------------------------------------------------- concurrency


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

    async def scenario() -> list[ToolResult]:
        tasks = [asyncio.create_task(executor.execute(call("gated", step_id=f"s{i}"))) for i in range(6)]
        for _ in range(20):  # let every task reach the tool or the limiter
            await asyncio.sleep(0)
        assert executor.in_flight("gated") == (2, 4)
        gate.set()
        return await asyncio.gather(*tasks)

    results = asyncio.run(scenario())
    assert all(r.ok for r in results)
    assert peak == 2
    assert executor.in_flight("gated") == (0, 0)


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
    results: list[ToolResult] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(executor.execute_sync(call("blocking", step_id=f"s{i}"))))
        for i in range(3)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while executor.in_flight("blocking") != (1, 2) and time.monotonic() < deadline:
        threading.Event().wait(0.005)  # polling a condition, with a deadline
    assert executor.in_flight("blocking") == (1, 2)
    gate.set()
    for thread in threads:
        thread.join(10)
    assert len(results) == 3 and all(r.ok for r in results)
    assert peak == 1


def test_limiter_cancellation_passes_the_slot_on() -> None:
    async def scenario() -> None:
        limiter = _Limiter(1)
        await limiter.acquire()
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        assert limiter.waiting == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert limiter.waiting == 0
        limiter.release()
        assert limiter.active == 0

        await limiter.acquire()
        handed = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        limiter.release()  # the slot moves to `handed` ...
        handed.cancel()  # ... which is cancelled before it runs, so it must give the slot back
        with pytest.raises(asyncio.CancelledError):
            await handed
        assert (limiter.active, limiter.waiting) == (0, 0)
        await asyncio.wait_for(limiter.acquire(), 1)
        assert limiter.active == 1

    asyncio.run(scenario())


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
    codes = [executor.execute_sync(call("upstream")).error.code for _ in range(3)]  # type: ignore[union-attr]
    assert codes == ["tool_failed", "tool_failed", "circuit_open"]
    rejected = executor.execute_sync(call("upstream"))
    assert rejected.error is not None and rejected.error.retryable and "try again in 10 s" in rejected.error.message
    clock.now += 10
    healthy = True
    assert executor.execute_sync(call("upstream")).value == "ok"
    assert [t[2] for t in transitions] == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    healthy = False
    executor.execute_sync(call("upstream"))
    for _ in range(3):  # the caller's mistakes never open the circuit, and show the tool is answering
        assert executor.execute_sync(call("upstream", strict=True)).error.code == "invalid_request"  # type: ignore[union-attr]
        assert executor.execute_sync(call("upstream", bogus=1)).error.code == "tool_arguments_invalid"  # type: ignore[union-attr]
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
        assert executor.execute_sync(call("buggy")).error.retryable is False  # type: ignore[union-attr]
    assert breaker.state("buggy").state is BreakerState.CLOSED


def test_timeouts_count_as_breaker_failures() -> None:
    breaker = CircuitBreaker(MemoryBreakerStore(), BreakerSettings(failure_threshold=1))
    executor = ToolExecutor(CATALOG, breaker)
    assert executor.execute_sync(call("hang")).error.code == "tool_timeout"  # type: ignore[union-attr]
    assert breaker.state("hang").state is BreakerState.OPEN


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ToolSettings().timeout_s = 1  # type: ignore[misc]
