"""BlobBreakerStore against Azurite: the breaker's state machine and ETag concurrency on real Blob Storage."""

from __future__ import annotations

import contextlib
import threading
import uuid
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

from shared.catalog.breaker import (
    BlobBreakerStore,
    BreakerRecord,
    BreakerSettings,
    BreakerState,
    CircuitBreaker,
    Transition,
)

pytestmark = pytest.mark.azurite

SETTINGS = BreakerSettings(failure_threshold=3, cooldown_s=30.0, trial_lease_s=10.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def container(azurite: Any) -> Any:
    """A fresh, not yet created container (the store creates it on its first write)."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    client = service.get_container_client(f"breaker-{uuid.uuid4().hex[:12]}")
    yield client
    with contextlib.suppress(ResourceNotFoundError):  # tests that only read never create it
        client.delete_container()


def new_store(container: Any, *, max_attempts: int = 20) -> BlobBreakerStore:
    """A store with its own client, as a separate instance would have."""
    from azure.storage.blob import ContainerClient

    own = ContainerClient.from_container_url(container.url, credential=container.credential)
    return BlobBreakerStore(own, max_attempts=max_attempts, sleep=lambda _: None)


def test_missing_blob_reads_as_closed(container: Any) -> None:
    assert BlobBreakerStore(container).get("tool") == BreakerRecord()


def test_state_machine_on_blob_storage(container: Any) -> None:
    clock = Clock()
    store = BlobBreakerStore(container)
    breaker = CircuitBreaker(store, SETTINGS, clock=clock)
    for _ in range(2):
        assert breaker.record_failure("search") is None
    assert breaker.record_failure("search") == Transition("search", BreakerState.CLOSED, BreakerState.OPEN)
    blob = container.get_blob_client("breaker/search.json").download_blob().readall()
    assert b'"state": "open"' in blob
    other = CircuitBreaker(new_store(container), SETTINGS, clock=clock)
    assert not other.allow("search")
    clock.now += 30
    assert other.allow("search")
    assert not breaker.allow("search")
    assert breaker.record_success("search") == Transition("search", BreakerState.HALF_OPEN, BreakerState.CLOSED)
    assert other.state("search") == BreakerRecord()


def test_a_lost_race_is_retried_on_the_fresh_record(container: Any) -> None:
    store = BlobBreakerStore(container, sleep=lambda _: None)
    rival = new_store(container)
    store.update("t", lambda r: BreakerRecord(failures=1))  # the blob exists
    calls = 0

    def change(record: BreakerRecord) -> BreakerRecord:
        nonlocal calls
        calls += 1
        if calls == 1:  # another instance writes between our read and our write: our ETag is stale
            rival.update("t", lambda r: BreakerRecord(failures=r.failures + 10))
        return BreakerRecord(failures=record.failures + 1)

    old, new = store.update("t", change)
    assert calls == 2
    assert (old.failures, new.failures) == (11, 12)
    assert store.get("t").failures == 12


def test_concurrent_failures_are_all_counted(container: Any) -> None:
    # Six writers on one blob, five writes each: on a loaded 2-core machine a writer can lose 20 races in a row
    # (the store then gives up and logs, failing open), so this test allows more attempts to check the counting.
    breakers = [CircuitBreaker(new_store(container, max_attempts=200), BreakerSettings(failure_threshold=1_000))
                for _ in range(6)]
    breakers[0].record_failure("t")  # create the container and blob before the race
    barrier = threading.Barrier(len(breakers))

    def fail(breaker: CircuitBreaker) -> None:
        barrier.wait()
        for _ in range(5):
            breaker.record_failure("t")

    threads = [threading.Thread(target=fail, args=(b,)) for b in breakers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert BlobBreakerStore(container).get("t").failures == 31


def test_only_one_instance_wins_the_trial(container: Any) -> None:
    clock = Clock()
    opener = CircuitBreaker(new_store(container), SETTINGS, clock=clock)
    for _ in range(3):
        opener.record_failure("t")
    clock.now += 30
    contenders = [CircuitBreaker(new_store(container), SETTINGS, clock=clock) for _ in range(6)]
    barrier = threading.Barrier(len(contenders))
    granted: list[bool] = []

    def contend(breaker: CircuitBreaker) -> None:
        barrier.wait()
        granted.append(breaker.allow("t"))

    threads = [threading.Thread(target=contend, args=(b,)) for b in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(granted) == [False] * 5 + [True]
