"""The run index on SQLite: atomic claims, owners, pages newest first with continuation tokens."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.errors import InvalidRequest, UpstreamUnavailable
from shared.runs.run_index import CachedRunIndex, RunEntry, SqliteRunIndex, purged, read_entry

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def entry(run_id: str, owner: str = "t/a", minutes: int = 0, body: str = "b1") -> RunEntry:
    return RunEntry(run_id=run_id, owner=owner, owner_name=owner, mode="plan",
                    created_at=T0 + timedelta(minutes=minutes), request_sha256=body)


def test_a_claim_inserts_once_and_then_returns_the_entry_there(tmp_path: Path) -> None:
    index = SqliteRunIndex(tmp_path / "runs.sqlite")
    assert index.claim(entry("run-1")) is None
    again = index.claim(entry("run-1", owner="t/b", body="b2"))
    assert again is not None and again.owner == "t/a" and again.request_sha256 == "b1"
    assert index.get("run-1") == entry("run-1")
    assert index.get("run-2") is None


def test_concurrent_claims_of_one_run_id_have_exactly_one_winner(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    SqliteRunIndex(path)
    winners: list[bool] = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        won = SqliteRunIndex(path).claim(entry("run-x", body=f"b{i}")) is None  # one index per "process"
        with lock:
            winners.append(won)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert winners.count(True) == 1 and len(winners) == 20


def test_a_claim_whose_entry_in_the_way_is_purged_before_it_is_read_inserts_after_all(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    retention = SqliteRunIndex(path)  # another process, purging old runs
    retention.claim(entry("run-1", body="old"))

    class PurgedBeforeRead(SqliteRunIndex):
        purges = 1

        def get(self, run_id: str) -> RunEntry | None:
            if self.purges:  # between the insert that found the old entry and the read of it
                self.purges -= 1
                retention.remove(run_id)
            return super().get(run_id)

    assert PurgedBeforeRead(path).claim(entry("run-1", body="new")) is None  # inserted: and so it is
    assert retention.get("run-1") == entry("run-1", body="new")


def test_a_claim_that_finds_its_entry_purged_at_every_attempt_is_a_retryable_error(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    other = SqliteRunIndex(path)
    other.claim(entry("run-1", body="b0"))
    attempts: list[int] = []

    class PurgedAndClaimedAgain(SqliteRunIndex):
        def get(self, run_id: str) -> RunEntry | None:
            other.remove(run_id)
            found = super().get(run_id)
            attempts.append(1)
            other.claim(entry(run_id, body=f"b{len(attempts)}"))  # in the way of the next insert again
            return found

    with pytest.raises(UpstreamUnavailable, match="purged under every claim") as raised:
        PurgedAndClaimedAgain(path).claim(entry("run-1", body="mine"))
    assert raised.value.retryable and len(attempts) == 3
    assert other.get("run-1") == entry("run-1", body="b3")  # nothing of the failed claim was written


def test_pages_are_newest_first_per_owner_and_the_token_continues(tmp_path: Path) -> None:
    index = SqliteRunIndex(tmp_path / "runs.sqlite")
    for minute in range(7):
        index.claim(entry(f"a{minute}", owner="t/a", minutes=minute))
        index.claim(entry(f"b{minute}", owner="t/b", minutes=minute))
    first, token = index.page("t/a", 3)
    assert [e.run_id for e in first] == ["a6", "a5", "a4"] and token
    second, token = index.page("t/a", 3, token)
    third, last = index.page("t/a", 3, token)
    assert [e.run_id for e in second + third] == ["a3", "a2", "a1", "a0"] and last is None
    everyone, _ = index.page(None, 4)
    assert [e.run_id for e in everyone] == ["a6", "b6", "a5", "b5"]  # same minute: by run id


@pytest.mark.parametrize("token", ["x", "not-base64!", "eyJ4IjoxfQ", "e30"],
                         ids=["short", "junk", "wrong-key", "empty"])
def test_a_forged_continuation_token_is_a_400(tmp_path: Path, token: str) -> None:
    index = SqliteRunIndex(tmp_path / "runs.sqlite")
    with pytest.raises(InvalidRequest) as caught:
        index.page("t/a", 3, token)
    assert caught.value.field == "continuation"


def test_remove_forgets_the_run_and_is_idempotent(tmp_path: Path) -> None:
    index = SqliteRunIndex(tmp_path / "runs.sqlite")
    index.claim(entry("run-1"))
    index.remove("run-1")
    index.remove("run-1")
    assert index.get("run-1") is None and index.page("t/a", 5) == ([], None)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_remembered_entry_is_read_once_until_it_ages_out(tmp_path: Path) -> None:
    store = SqliteRunIndex(tmp_path / "runs.sqlite")
    store.claim(entry("run-1"))
    clock = Clock()
    index = CachedRunIndex(store, entries=10, ttl_s=60.0, clock=clock)
    assert index.cached("run-1") is None
    assert index.get("run-1") == entry("run-1")
    store.remove("run-1")  # another instance's retention purge: this one does not know yet
    assert index.cached("run-1") == entry("run-1") == index.get("run-1")
    clock.now += 60.001  # past the ttl (TtlLruCache: alive at exactly the ttl)
    assert index.cached("run-1") is None and index.get("run-1") is None


def test_a_claim_is_remembered_and_a_remove_forgets_at_once(tmp_path: Path) -> None:
    index = CachedRunIndex(SqliteRunIndex(tmp_path / "runs.sqlite"), clock=Clock())
    assert index.claim(entry("run-1")) is None
    assert index.cached("run-1") == entry("run-1")
    theirs = index.claim(entry("run-1", owner="t/b", body="b2"))
    assert theirs == entry("run-1") == index.cached("run-1")  # the entry that is there, not the loser's
    index.remove("run-1")
    assert index.cached("run-1") is None and index.get("run-1") is None
    assert index.page(None, 10) == ([], None)


def test_memory_keeps_the_most_recently_used_entries_and_can_be_off(tmp_path: Path) -> None:
    store = SqliteRunIndex(tmp_path / "runs.sqlite")
    index = CachedRunIndex(store, entries=2, clock=Clock())
    for run_id in ("a", "b", "c"):
        index.claim(entry(run_id))
    assert index.cached("a") is None and index.cached("b") == entry("b")  # "b" is now the most recent
    index.get("a")  # read back from storage: remembered again, and "c" (the least recently used) goes
    assert index.cached("c") is None
    assert index.cached("a") == entry("a") and index.cached("b") == entry("b")
    off = CachedRunIndex(store, entries=0, clock=Clock())
    assert off.get("a") == entry("a") and off.cached("a") is None


def test_read_entry_skips_storage_for_a_remembered_entry(tmp_path: Path) -> None:
    store = SqliteRunIndex(tmp_path / "runs.sqlite")
    index = CachedRunIndex(store, clock=Clock())
    index.claim(entry("run-1"))
    store.remove("run-1")
    assert asyncio.run(read_entry(index, "run-1")) == entry("run-1")
    assert asyncio.run(read_entry(store, "run-1")) is None


def test_purged_rereads_a_remembered_entry_and_forgets_it_when_storage_has_none(tmp_path: Path) -> None:
    store = SqliteRunIndex(tmp_path / "runs.sqlite")
    index = CachedRunIndex(store, clock=Clock())
    index.claim(entry("run-1"))
    index.claim(entry("run-2"))
    store.remove("run-1")  # purged by another instance
    assert asyncio.run(purged(index, "run-1")) is True
    assert index.cached("run-1") is None
    assert asyncio.run(purged(index, "run-2")) is False  # still there: remembered again
    assert index.cached("run-2") == entry("run-2")
    assert asyncio.run(purged(store, "run-2")) is False  # a plain index holds nothing in memory: it reads storage
    assert asyncio.run(purged(store, "run-1")) is True and store.cached("run-2") is None


def test_a_read_that_overlapped_a_remove_is_not_cached(tmp_path: Path) -> None:
    store = SqliteRunIndex(tmp_path / "runs.sqlite")
    store.claim(entry("run-1"))

    class RemovedDuringRead(SqliteRunIndex):
        def get(self, run_id: str) -> RunEntry | None:
            found = super().get(run_id)
            index.remove(run_id)  # retention on this instance, between the storage read and caching it
            return found

    index = CachedRunIndex(RemovedDuringRead(tmp_path / "runs.sqlite"), clock=Clock())
    assert index.get("run-1") == entry("run-1")  # what storage said when read
    assert index.cached("run-1") is None and store.get("run-1") is None
