"""The audit trail in append blobs on Azurite: one JSON line per block, hourly blobs and parts, nothing overwritten."""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

from shared.identity.audit import AuditRecord, AuditSettings, AuditTrail, build_audit_log
from shared.identity.audit_store import AppendBlobAuditStore
from shared.payloads import PayloadSettings

pytestmark = pytest.mark.azurite

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, moment: datetime = T0) -> None:
        self.now = moment.timestamp()

    def __call__(self) -> float:
        return self.now

    def at(self, moment: datetime) -> float:
        self.now = moment.timestamp()
        return self.now


@pytest.fixture
def container(azurite: Any) -> Any:
    """A fresh, not yet created container (the store creates it on its first append)."""
    from azure.storage.blob import BlobServiceClient

    client = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        f"audit-{uuid.uuid4().hex[:12]}")
    yield client
    with contextlib.suppress(ResourceNotFoundError):
        client.delete_container()


def own_container(container: Any) -> Any:
    """A client of its own, as another instance would have."""
    from azure.storage.blob import ContainerClient

    return ContainerClient.from_container_url(container.url, credential=container.credential)


def record(moment: datetime, *, caller: str = "t/a", run_id: str = "r1", **fields: Any) -> AuditRecord:
    return AuditRecord(time=moment, caller=caller, action=fields.pop("action", "tool.execute"), run_id=run_id,
                       outcome=fields.pop("outcome", "ok"), **fields)


def names(container: Any) -> list[str]:
    return sorted(blob.name for blob in container.list_blobs())


def test_append_writes_one_json_line_per_block_in_the_hour_blob(container: Any) -> None:
    clock = Clock(T0 + timedelta(minutes=5))
    store = AppendBlobAuditStore(container, clock=clock)
    first = record(T0 + timedelta(minutes=5), tool="send_email", attempt=1, args_sha256="b" * 64)
    store.append(first)
    store.append(record(T0 + timedelta(minutes=6), attempt=2))
    assert names(container) == ["audit/2026/12/07/12/part-0000.jsonl"]
    blob = container.get_blob_client("audit/2026/12/07/12/part-0000.jsonl")
    props = blob.get_blob_properties()
    assert props.blob_type == "AppendBlob" and props.append_blob_committed_block_count == 2
    lines = blob.download_blob().readall().decode().splitlines()
    assert [json.loads(line)["attempt"] for line in lines] == [1, 2]
    assert AuditRecord.model_validate_json(lines[0]) == first


def test_two_writers_many_records_nothing_lost_or_overwritten(container: Any) -> None:
    clock = Clock(T0 + timedelta(minutes=30))
    AppendBlobAuditStore(container, clock=clock).append(record(T0, caller="t/seed"))  # the blob exists
    writers = [AppendBlobAuditStore(own_container(container), clock=clock) for _ in range(2)]
    barrier = threading.Barrier(len(writers))

    def write(index: int, store: AppendBlobAuditStore) -> None:
        barrier.wait()
        for i in range(40):
            store.append(record(T0 + timedelta(seconds=i), caller=f"t/w{index}", detail=str(i)))

    threads = [threading.Thread(target=write, args=(i, w)) for i, w in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    reader = AppendBlobAuditStore(own_container(container), clock=clock)
    found = reader.query(limit=1000)
    assert len(found) == 81 and len({r.id for r in found}) == 81
    assert found[0].caller == "t/seed"  # the first record survived every writer's blob creation
    for index in range(2):
        assert sorted(int(r.detail) for r in reader.query(caller=f"t/w{index}", limit=1000)) == list(range(40))


def test_a_fresh_writer_never_replaces_an_existing_blob(container: Any) -> None:
    clock = Clock()
    AppendBlobAuditStore(container, clock=clock).append(record(T0, detail="first"))
    AppendBlobAuditStore(own_container(container), clock=clock).append(record(T0, detail="second"))
    assert [r.detail for r in AppendBlobAuditStore(container, clock=clock).query()] == ["first", "second"]


def test_writers_rotate_to_the_next_part_before_the_block_limit(container: Any) -> None:
    clock = Clock()
    store = AppendBlobAuditStore(container, clock=clock, rotate_at=3)
    late = AppendBlobAuditStore(own_container(container), clock=clock, rotate_at=3)
    for i in range(7):
        store.append(record(T0, detail=str(i)))
    late.append(record(T0, detail="late"))  # starts at part 0 and walks on from the counts it sees
    assert names(container) == [f"audit/2026/12/07/12/part-000{p}.jsonl" for p in range(3)]
    counts = [container.get_blob_client(n).get_blob_properties().append_blob_committed_block_count
              for n in names(container)]
    assert counts == [4, 3, 1]  # the late writer's first record landed in part 0 (headroom), then it moved on
    assert len(store.query(limit=100)) == 8


def test_query_reads_from_since_and_filters(container: Any) -> None:
    clock = Clock()
    store = AppendBlobAuditStore(container, clock=clock)
    for hours, caller, run in [(0, "t/a", "r1"), (1, "t/b", "r2"), (5, "t/a", "r2"), (30, "t/b", "r1")]:
        moment = T0 + timedelta(hours=hours)
        clock.at(moment)
        store.append(record(moment, caller=caller, run_id=run))
    assert len(names(container)) == 4
    assert [r.time.hour for r in store.query(run_id="r2")] == [13, 17]
    assert [r.caller for r in store.query(since=T0 + timedelta(hours=3))] == ["t/a", "t/b"]
    assert [r.time.hour for r in store.query(caller="t/b", since=T0 + timedelta(minutes=30))] == [13, 18]
    assert [r.time.hour for r in store.query(limit=2)] == [12, 13]
    assert store.query(run_id="none") == []


def test_purge_deletes_whole_old_hours_and_survives_a_blob_the_service_keeps(container: Any) -> None:
    clock = Clock()
    store = AppendBlobAuditStore(container, clock=clock)
    for hours in (0, 0, 1, 2, 3):
        moment = T0 + timedelta(hours=hours)
        clock.at(moment)
        store.append(record(moment))
    kept = container.get_blob_client("audit/2026/12/07/13/part-0000.jsonl").acquire_lease()  # refuses deletion
    try:
        assert store.purge(T0 + timedelta(hours=2, minutes=30)) == 2  # hour 12 (2 records); hour 13 is kept
    finally:
        kept.release()
    assert names(container) == [f"audit/2026/12/07/{h}/part-0000.jsonl" for h in (13, 14, 15)]
    assert store.purge(T0 + timedelta(hours=3)) == 2  # hours 13 and 14; hour 15 has not ended
    assert [r.time.hour for r in store.query()] == [15]


def test_trail_on_blob_storage_through_build_audit_log(azurite: Any, container: Any) -> None:
    clock = Clock(T0 + timedelta(days=400))
    settings = AuditSettings(container=container.container_name, retention_days=365, query_max=2)
    trail = build_audit_log(settings, storage=PayloadSettings(connection_string=azurite.connection_string),
                            clock=clock)
    assert isinstance(trail, AuditTrail) and isinstance(trail.store, AppendBlobAuditStore)
    for day in (0, 100, 399):  # the first is past the retention
        clock.at(T0 + timedelta(days=day))
        trail.append(record(T0 + timedelta(days=day)))
    clock.at(T0 + timedelta(days=400))
    assert [r.time for r in trail.query(limit=100)] == [T0 + timedelta(days=100), T0 + timedelta(days=399)]
    assert trail.purge(T0 + timedelta(days=1000)) == 1  # only the record older than the retention
    assert len(trail.query(since=T0, limit=2)) == 2
