"""The run index on Azure Table Storage (Azurite): one winner per run id across clients, pages per owner."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.runs.run_index import RunEntry, TableRunIndex

pytestmark = pytest.mark.azurite
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def entry(run_id: str, owner: str = "t/a", minutes: int = 0, body: str = "b1") -> RunEntry:
    return RunEntry(run_id=run_id, owner=owner, owner_name=owner, mode="code",
                    created_at=T0 + timedelta(minutes=minutes), request_sha256=body)


@pytest.fixture
def table_name() -> str:
    return "runs" + uuid.uuid4().hex[:12]


def index_for(azurite: Any, table_name: str) -> TableRunIndex:
    from azure.data.tables import TableClient

    return TableRunIndex(TableClient.from_connection_string(azurite.connection_string, table_name))


def test_claims_from_separate_clients_have_one_winner(azurite: Any, table_name: str) -> None:
    winners: list[bool] = []
    lock = threading.Lock()

    def submit(i: int) -> None:
        won = index_for(azurite, table_name).claim(entry("run-x", body=f"b{i}")) is None
        with lock:
            winners.append(won)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert winners.count(True) == 1 and len(winners) == 10
    stored = index_for(azurite, table_name).get("run-x")
    assert stored is not None and stored.owner == "t/a"


def test_a_claim_whose_entry_in_the_way_is_purged_before_it_is_read_inserts_after_all(
        azurite: Any, table_name: str) -> None:
    from azure.data.tables import TableClient

    retention = index_for(azurite, table_name)  # another instance, purging old runs
    retention.claim(entry("run-1", body="old"))

    class PurgedBeforeRead(TableRunIndex):
        purges = 1

        def get(self, run_id: str) -> RunEntry | None:
            if self.purges:  # between the create that found the old entity and the read of it
                self.purges -= 1
                retention.remove(run_id)
            return super().get(run_id)

    index = PurgedBeforeRead(TableClient.from_connection_string(azurite.connection_string, table_name))
    assert index.claim(entry("run-1", body="new")) is None  # inserted: and so it is, listed too
    assert retention.get("run-1") == entry("run-1", body="new")
    assert retention.page("t/a", 10)[0] == [entry("run-1", body="new")]


def test_pages_per_owner_and_for_everyone(azurite: Any, table_name: str) -> None:
    index = index_for(azurite, table_name)
    for minute in range(5):
        index.claim(entry(f"a{minute}", owner="t/a", minutes=minute))
        index.claim(entry(f"b{minute}", owner="t/b", minutes=minute))
    first, token = index.page("t/a", 2)
    rest, end = index.page("t/a", 10, token)
    assert [e.run_id for e in first] == ["a4", "a3"] and [e.run_id for e in rest] == ["a2", "a1", "a0"]
    assert end is None
    everyone, _ = index.page(None, 10)
    assert len(everyone) == 10 and everyone[0].created_at >= everyone[-1].created_at
    index.remove("a4")
    assert index.get("a4") is None and [e.run_id for e in index.page("t/a", 1)[0]] == ["a3"]
