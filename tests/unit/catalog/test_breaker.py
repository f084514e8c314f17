"""The circuit breaker: its state machine on an injected clock, and its stores shared across threads and processes."""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.catalog.breaker import (
    BreakerRecord,
    BreakerSettings,
    BreakerState,
    BreakerStore,
    CircuitBreaker,
    MemoryBreakerStore,
    SqliteBreakerStore,
    Transition,
)
from shared.errors import CircuitOpen

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
SETTINGS = BreakerSettings(failure_threshold=3, cooldown_s=30.0, trial_lease_s=10.0)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BreakerStore:
    if request.param == "memory":
        return MemoryBreakerStore()
    return SqliteBreakerStore(tmp_path / "breaker.sqlite")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def transitions() -> list[tuple[str, BreakerState, BreakerState]]:
    return []


@pytest.fixture
def breaker(store: BreakerStore, clock: Clock, transitions: list) -> CircuitBreaker:
    return CircuitBreaker(store, SETTINGS, clock=clock, on_transition=lambda *t: transitions.append(t))


def open_circuit(breaker: CircuitBreaker, tool: str = "t") -> None:
    for _ in range(SETTINGS.failure_threshold):
        breaker.record_failure(tool)
    assert breaker.state(tool).state is OPEN


def test_settings_from_env() -> None:
    assert BreakerSettings.from_env({}) == BreakerSettings(failure_threshold=5, cooldown_s=30.0, trial_lease_s=60.0)
    settings = BreakerSettings.from_env(
        {"WEFT_BREAKER_FAILURE_THRESHOLD": "2", "WEFT_BREAKER_COOLDOWN_S": "1.5", "WEFT_BREAKER_TRIAL_LEASE_S": "4"}
    )
    assert settings == BreakerSettings(2, 1.5, 4.0)
    assert BreakerSettings().container == "weft-breakers"
    assert BreakerSettings.from_env({"WEFT_BREAKER_CONTAINER": "breakers"}).container == "breakers"
    assert BreakerSettings().closed_cache_s == 1.0
    assert BreakerSettings.from_env({"WEFT_BREAKER_CLOSED_CACHE_S": "0"}).closed_cache_s == 0.0
    with pytest.raises(ValueError, match="WEFT_BREAKER_FAILURE_THRESHOLD"):
        BreakerSettings.from_env({"WEFT_BREAKER_FAILURE_THRESHOLD": "0"})


def test_record_round_trips_through_json() -> None:
    record = BreakerRecord(HALF_OPEN, 4, 12.5, 20.0)
    assert BreakerRecord.from_dict(record.to_dict()) == record
    assert record.to_dict()["state"] == "half_open"
    assert BreakerRecord.from_dict({}) == BreakerRecord()


# ----------------------------------------------------------------------------------------------- state machine


def test_full_cycle_open_reject_half_open_close(breaker: CircuitBreaker, clock: Clock, transitions: list) -> None:
    assert breaker.allow("t")
    assert breaker.record_failure("t") is None
    assert breaker.record_failure("t") is None
    assert breaker.state("t") == BreakerRecord(CLOSED, 2)
    assert breaker.record_failure("t") == Transition("t", CLOSED, OPEN)
    assert breaker.state("t") == BreakerRecord(OPEN, 3, opened_at=1_000.0)

    clock.advance(29.9)
    assert not breaker.allow("t")
    with pytest.raises(CircuitOpen) as caught:
        breaker.check("t")
    assert caught.value.retryable
    assert "after 3 consecutive failures (it is cooling down); try again in 0 s" in caught.value.message

    clock.advance(0.1)
    assert breaker.allow("t")  # the trial
    assert breaker.state("t").state is HALF_OPEN
    assert not breaker.allow("t")  # everyone else waits for the trial
    with pytest.raises(CircuitOpen, match=r"trial call is checking whether it has recovered\); try again in 10 s"):
        breaker.check("t")
    assert breaker.record_success("t") == Transition("t", HALF_OPEN, CLOSED)
    assert breaker.state("t") == BreakerRecord()
    assert breaker.allow("t")
    assert transitions == [("t", CLOSED, OPEN), ("t", OPEN, HALF_OPEN), ("t", HALF_OPEN, CLOSED)]


def test_retry_after_is_the_rest_of_the_cooldown(breaker: CircuitBreaker, clock: Clock) -> None:
    assert breaker.retry_after("t") == 0.0  # closed
    open_circuit(breaker)
    assert breaker.retry_after("t") == pytest.approx(30.0)
    clock.advance(12.5)
    assert breaker.retry_after("t") == pytest.approx(17.5)
    clock.advance(17.5)
    assert breaker.retry_after("t") == 0.0  # the trial is due
    assert breaker.allow("t")
    clock.advance(4)
    assert breaker.retry_after("t") == pytest.approx(6.0)  # the rest of the trial's lease


def test_retry_after_waits_at_most_one_cooldown_for_a_trial(store: BreakerStore, clock: Clock) -> None:
    breaker = CircuitBreaker(store, BreakerSettings(failure_threshold=1, cooldown_s=2.0, trial_lease_s=60.0),
                             clock=clock)
    breaker.record_failure("t")
    clock.advance(2)
    assert breaker.allow("t")  # a trial with a 60 s lease
    assert breaker.retry_after("t") == pytest.approx(2.0)


def test_success_resets_the_consecutive_count(breaker: CircuitBreaker) -> None:
    breaker.record_failure("t")
    breaker.record_failure("t")
    assert breaker.record_success("t") is None
    breaker.record_failure("t")
    breaker.record_failure("t")
    assert breaker.state("t").state is CLOSED


def test_failed_trial_reopens_for_a_new_cooldown(breaker: CircuitBreaker, clock: Clock) -> None:
    open_circuit(breaker)
    clock.advance(30)
    assert breaker.allow("t")
    assert breaker.record_failure("t") == Transition("t", HALF_OPEN, OPEN)
    assert breaker.state("t").opened_at == clock.now
    clock.advance(29)
    assert not breaker.allow("t")
    clock.advance(1)
    assert breaker.allow("t")


def test_an_abandoned_trial_expires_after_its_lease(breaker: CircuitBreaker, clock: Clock) -> None:
    open_circuit(breaker)
    clock.advance(30)
    assert breaker.allow("t")
    clock.advance(9.9)
    assert not breaker.allow("t")
    clock.advance(0.1)
    assert breaker.allow("t")  # the first trial's worker is presumed dead
    assert breaker.state("t").trial_until == clock.now + SETTINGS.trial_lease_s


def test_a_late_success_does_not_close_an_open_circuit(breaker: CircuitBreaker) -> None:
    open_circuit(breaker)
    assert breaker.record_success("t") is None
    assert breaker.state("t").state is OPEN


def test_tools_have_separate_circuits(breaker: CircuitBreaker) -> None:
    open_circuit(breaker, "a")
    assert not breaker.allow("a")
    assert breaker.allow("b")


def test_transitions_are_logged(breaker: CircuitBreaker, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="shared.catalog.breaker")
    open_circuit(breaker, "search")
    clock.advance(30)
    breaker.allow("search")
    breaker.record_success("search")
    messages = [r.getMessage() for r in caplog.records]
    assert "circuit for tool search opened after 3 consecutive failures" in messages
    assert "circuit for tool search: open -> half_open" in messages
    assert "circuit for tool search: half_open -> closed" in messages


def test_a_failing_hook_does_not_break_the_breaker(caplog: pytest.LogCaptureFixture) -> None:
    def hook(tool: str, old: BreakerState, new: BreakerState) -> None:
        raise RuntimeError("telemetry down")

    breaker = CircuitBreaker(MemoryBreakerStore(), BreakerSettings(failure_threshold=1), on_transition=hook)
    assert breaker.record_failure("t") == Transition("t", CLOSED, OPEN)
    assert "on_transition hook failed for tool t" in caplog.text


class BrokenStore:
    """A store whose backend is down."""

    def get(self, tool: str) -> BreakerRecord:
        raise OSError("storage unavailable")

    def update(self, tool: str, change: Callable[[BreakerRecord], BreakerRecord]) -> tuple[BreakerRecord, ...]:
        raise OSError("storage unavailable")


def test_a_failing_store_lets_calls_through(caplog: pytest.LogCaptureFixture) -> None:
    breaker = CircuitBreaker(BrokenStore())
    assert breaker.allow("t") is True
    breaker.check("t")
    assert breaker.record_failure("t") is None
    assert breaker.record_success("t") is None
    assert "circuit breaker store failed for tool t; allowing the call" in caplog.text
    assert "failure not recorded" in caplog.text


# ----------------------------------------------------------------------------------------------- sharing


def test_two_breakers_on_one_store_share_state(store: BreakerStore, clock: Clock) -> None:
    first = CircuitBreaker(store, SETTINGS, clock=clock)
    second = CircuitBreaker(store, SETTINGS, clock=clock)
    first.record_failure("t")
    second.record_failure("t")
    first.record_failure("t")
    assert not second.allow("t")
    clock.advance(30)
    assert second.allow("t")
    assert not first.allow("t")


class CountingStore(MemoryBreakerStore):
    """A memory store that counts its reads and updates."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.updates = 0

    def get(self, tool: str) -> BreakerRecord:
        self.reads += 1
        return super().get(tool)

    def update(
        self, tool: str, change: Callable[[BreakerRecord], BreakerRecord]
    ) -> tuple[BreakerRecord, BreakerRecord]:
        self.updates += 1
        return super().update(tool, change)


def test_a_tool_seen_healthy_is_not_read_again_within_the_cache_time(clock: Clock) -> None:
    store = CountingStore()
    breaker = CircuitBreaker(store, BreakerSettings(closed_cache_s=1.0), clock=clock, monotonic=clock)
    assert not breaker.known_healthy("t")
    breaker.check("t")
    assert (store.reads, breaker.known_healthy("t")) == (1, True)
    for _ in range(5):
        breaker.check("t")
        assert breaker.record_success("t") is None
    assert (store.reads, store.updates) == (1, 0)
    clock.advance(1.0)
    assert not breaker.known_healthy("t")
    breaker.check("t")
    assert store.reads == 2


def test_another_instance_opening_the_circuit_is_seen_once_the_cache_time_is_over(clock: Clock) -> None:
    store = MemoryBreakerStore()
    here = CircuitBreaker(store, BreakerSettings(failure_threshold=2, closed_cache_s=1.0), clock=clock, monotonic=clock)
    elsewhere = CircuitBreaker(store, BreakerSettings(failure_threshold=2, closed_cache_s=1.0), clock=clock)
    here.check("t")
    elsewhere.record_failure("t")
    elsewhere.record_failure("t")
    assert store.get("t").state is OPEN
    here.check("t")  # still within the second it trusts what it saw
    clock.advance(1.0)
    with pytest.raises(CircuitOpen):
        here.check("t")


def test_a_failure_here_is_counted_and_seen_at_once(clock: Clock) -> None:
    store = CountingStore()
    breaker = CircuitBreaker(store, BreakerSettings(failure_threshold=2, closed_cache_s=60.0), clock=clock,
                             monotonic=clock)
    breaker.check("t")
    breaker.record_failure("t")
    assert not breaker.known_healthy("t")
    assert store.get("t").failures == 1
    breaker.check("t")  # reads again: one failure is not yet an open circuit
    assert not breaker.known_healthy("t")
    breaker.record_success("t")  # ... and a success resets it in the store
    assert store.get("t") == BreakerRecord()
    breaker.record_failure("t")
    breaker.record_failure("t")
    with pytest.raises(CircuitOpen):
        breaker.check("t")


def test_a_zero_cache_time_reads_on_every_call(clock: Clock) -> None:
    store = CountingStore()
    breaker = CircuitBreaker(store, BreakerSettings(closed_cache_s=0.0), clock=clock, monotonic=clock)
    for _ in range(3):
        breaker.check("t")
        breaker.record_success("t")
    assert not breaker.known_healthy("t")
    assert store.reads == 6


def test_a_read_that_overlapped_a_failure_here_is_not_cached_as_healthy(clock: Clock) -> None:
    breaker: CircuitBreaker

    class SlowStore(MemoryBreakerStore):
        """A store whose read returns what it saw before this instance's own failures landed."""

        def get(self, tool: str) -> BreakerRecord:
            seen = super().get(tool)
            for _ in range(2):
                breaker.record_failure(tool)  # another worker thread's calls fail while this read is in flight
            return seen

    store = SlowStore()
    breaker = CircuitBreaker(store, BreakerSettings(failure_threshold=2, closed_cache_s=60.0), clock=clock,
                             monotonic=clock)
    assert breaker.allow("t")  # the read saw a clean record ...
    assert MemoryBreakerStore.get(store, "t").state is OPEN
    assert not breaker.known_healthy("t")  # ... but the failures since then keep it from being cached


def test_the_healthy_cache_runs_on_its_own_clock_not_the_wall_clock() -> None:
    wall, steady = Clock(5_000.0), Clock(0.0)
    store = MemoryBreakerStore()
    breaker = CircuitBreaker(store, BreakerSettings(failure_threshold=1, closed_cache_s=1.0), clock=wall,
                             monotonic=steady)
    breaker.check("t")
    wall.advance(-600)  # the wall clock is stepped back: the cache must not last 600 s longer
    steady.advance(1.0)
    CircuitBreaker(store, BreakerSettings(failure_threshold=1), clock=wall).record_failure("t")
    with pytest.raises(CircuitOpen):
        breaker.check("t")


def test_expired_healthy_marks_are_dropped(clock: Clock) -> None:
    breaker = CircuitBreaker(MemoryBreakerStore(), BreakerSettings(closed_cache_s=1.0), clock=clock,
                             monotonic=clock)
    for tool in ("a", "b", "c"):
        breaker.check(tool)
    clock.advance(1.0)
    assert not any(breaker.known_healthy(tool) for tool in ("a", "b", "c"))
    assert breaker._healthy_until == {}


def test_only_one_thread_wins_the_trial(tmp_path: Path) -> None:
    clock = Clock()
    store = SqliteBreakerStore(tmp_path / "race.sqlite")
    breaker = CircuitBreaker(store, SETTINGS, clock=clock)
    open_circuit(breaker)
    clock.advance(30)
    barrier = threading.Barrier(8)
    granted: list[bool] = []

    def contender() -> None:
        barrier.wait()
        granted.append(CircuitBreaker(store, SETTINGS, clock=clock).allow("t"))

    threads = [threading.Thread(target=contender) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(granted) == [False] * 7 + [True]


def _fail_in_child(path: str, tool: str, count: int, start: object) -> None:
    """Runs in a spawned process: record ``count`` failures once ``start`` is set."""
    start.wait()  # type: ignore[attr-defined]
    breaker = CircuitBreaker(
        SqliteBreakerStore(path), BreakerSettings(failure_threshold=1_000, cooldown_s=30), clock=lambda: 5_000.0
    )
    for _ in range(count):
        breaker.record_failure(tool)


def _open_in_child(path: str, tool: str) -> None:
    breaker = CircuitBreaker(SqliteBreakerStore(path), SETTINGS, clock=lambda: 5_000.0)
    for _ in range(SETTINGS.failure_threshold):
        breaker.record_failure(tool)


SPAWN = multiprocessing.get_context("spawn")


def test_sqlite_state_is_shared_with_another_process(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    child = SPAWN.Process(target=_open_in_child, args=(path, "search"))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    clock = Clock(5_000.0)
    breaker = CircuitBreaker(SqliteBreakerStore(path), SETTINGS, clock=clock)
    assert breaker.state("search") == BreakerRecord(OPEN, 3, opened_at=5_000.0)
    assert not breaker.allow("search")
    clock.advance(30)
    assert breaker.allow("search")
    assert breaker.record_success("search") == Transition("search", HALF_OPEN, CLOSED)


@pytest.mark.slow
def test_sqlite_updates_are_atomic_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "atomic.sqlite")
    SqliteBreakerStore(path)  # create the schema before the race
    start = SPAWN.Event()
    children = [SPAWN.Process(target=_fail_in_child, args=(path, "t", 25, start)) for _ in range(4)]
    for child in children:
        child.start()
    start.set()
    for child in children:
        child.join(timeout=60)
    assert [child.exitcode for child in children] == [0, 0, 0, 0]
    assert SqliteBreakerStore(path).get("t").failures == 100


def test_a_read_that_began_while_a_failure_was_being_written_is_not_cached(clock: Clock) -> None:
    breaker: CircuitBreaker
    read_during_write: list[bool] = []

    class WriteWithReadInFlight(MemoryBreakerStore):
        """Another thread's allow() reads the clean record while this instance's failure is being written."""

        def update(self, tool: str, change: Callable[[BreakerRecord], BreakerRecord]
                   ) -> tuple[BreakerRecord, BreakerRecord]:
            read_during_write.append(breaker.allow(tool))
            return super().update(tool, change)

    breaker = CircuitBreaker(WriteWithReadInFlight(), BreakerSettings(failure_threshold=1, closed_cache_s=60.0),
                             clock=clock, monotonic=clock)
    breaker.record_failure("t")
    assert read_during_write == [True]  # the store was still clean when it read ...
    assert not breaker.known_healthy("t")  # ... but it is not trusted: the circuit is open now
    with pytest.raises(CircuitOpen):
        breaker.check("t")
