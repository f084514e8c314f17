"""The audit trail on the memory and SQLite stores, its record, its bounds and its custom event."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from shared.identity.audit import (
    AUDIT_EVENT,
    DETAIL_MAX_CHARS,
    AuditRecord,
    AuditSettings,
    AuditTrail,
    build_audit_log,
)
from shared.identity.audit_store import AppendBlobAuditStore, MemoryAuditStore, SqliteAuditStore
from shared.payloads import PayloadSettings
from shared.telemetry.attributes import content_digest

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, moment: datetime = T0) -> None:
        self.now = moment.timestamp()

    def __call__(self) -> float:
        return self.now


class RecordingEvents:
    """An event sink that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, str]]] = []

    def emit(self, name: str, properties: Any) -> None:
        self.events.append((name, dict(properties)))


def record(minutes: float = 0, *, caller: str = "t/a", run_id: str | None = "run-1", **fields: Any) -> AuditRecord:
    return AuditRecord(time=T0 + timedelta(minutes=minutes), caller=caller, action=fields.pop("action", "run.submit"),
                       run_id=run_id, outcome=fields.pop("outcome", "ok"), **fields)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    return MemoryAuditStore() if request.param == "memory" else SqliteAuditStore(tmp_path / "audit.sqlite")


# ------------------------------------------------------------------------------------------------- record


def test_record_is_utc_json_line_without_values() -> None:
    naive = AuditRecord(time=datetime(2026, 1, 1, 8, 0), caller="t/a", action="tool.execute", run_id="r",
                        step_id="s1", tool="send_email", args_sha256=content_digest({"to": "x@example.com"}),
                        outcome="tool_failed", attempt=2, correlation_id="c-1")
    assert naive.time == datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    paris = timezone(timedelta(hours=2))
    shifted = AuditRecord(time=datetime(2026, 1, 1, 10, 0, tzinfo=paris), caller="t/a", action="run.cancel",
                          outcome="ok")
    assert shifted.time == naive.time and shifted.time.tzinfo is UTC
    line = naive.to_line()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert AuditRecord.model_validate_json(line) == naive
    assert b"x@example.com" not in line


@pytest.mark.parametrize("fields", [
    {"action": "run.delete"},
    {"args_sha256": "not-a-digest"},
    {"caller": ""},
    {"attempt": -1},
    {"arguments": {"a": 1}},
], ids=["unknown-action", "bad-digest", "no-caller", "negative-attempt", "argument-values"])
def test_bad_records_are_refused(fields: dict[str, Any]) -> None:
    base = {"caller": "t/a", "action": "run.submit", "outcome": "ok"}
    with pytest.raises(ValidationError):
        AuditRecord(**{**base, **fields})


def test_long_detail_is_cut() -> None:
    assert len(record(detail="x" * 5000).detail) == DETAIL_MAX_CHARS


def test_event_properties_are_text_and_omit_unset_fields() -> None:
    props = record(attempt=1, tool="t").event_properties()
    assert props["attempt"] == "1" and props["tool"] == "t" and props["action"] == "run.submit"
    assert "step_id" not in props and "args_sha256" not in props
    assert all(isinstance(v, str) for v in props.values())


# ------------------------------------------------------------------------------------------------- stores


def test_query_filters_by_run_caller_and_since_oldest_first(store: Any) -> None:
    for minutes, caller, run in [(3, "t/a", "r1"), (1, "t/a", "r1"), (2, "t/b", "r2"), (4, "t/b", "r1")]:
        store.append(record(minutes, caller=caller, run_id=run))
    assert [r.time.minute for r in store.query()] == [1, 2, 3, 4]
    assert [r.time.minute for r in store.query(run_id="r1")] == [1, 3, 4]
    assert [r.time.minute for r in store.query(caller="t/b")] == [2, 4]
    assert [r.time.minute for r in store.query(run_id="r1", caller="t/b")] == [4]
    assert [r.time.minute for r in store.query(since=T0 + timedelta(minutes=2))] == [2, 3, 4]
    assert [r.time.minute for r in store.query(limit=2)] == [1, 2]


def test_a_record_id_stored_twice_keeps_the_first(store: Any) -> None:
    first = record(outcome="ok")
    store.append(first)
    store.append(first.model_copy(update={"outcome": "forged"}))
    assert [r.outcome for r in store.query()] == ["ok"]


def test_purge_removes_only_older_records(store: Any) -> None:
    for minutes in (0, 10, 20):
        store.append(record(minutes))
    assert store.purge(T0 + timedelta(minutes=15)) == 2
    assert [r.time.minute for r in store.query()] == [20]


def test_sqlite_refuses_updates(tmp_path: Path) -> None:
    store = SqliteAuditStore(tmp_path / "audit.sqlite")
    store.append(record())
    with sqlite3.connect(tmp_path / "audit.sqlite") as conn, pytest.raises(sqlite3.IntegrityError,
                                                                           match="append-only"):
        conn.execute("UPDATE audit SET caller = 'someone/else'")
    assert store.query()[0].caller == "t/a"


def test_sqlite_writers_in_threads_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"

    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            store = SqliteAuditStore(path)  # one per process sharing the file, all opening it at once
            for i in range(50):
                store.append(record(i / 100, caller=f"t/{writer}"))
        except BaseException as exc:  # a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    records = SqliteAuditStore(path).query(limit=1000)
    assert errors == []
    assert len(records) == 200 and len({r.id for r in records}) == 200


# ------------------------------------------------------------------------------------------------- trail


def test_trail_emits_one_event_per_record() -> None:
    events = RecordingEvents()
    trail = AuditTrail(MemoryAuditStore(), events=events, clock=Clock())
    trail.append(record(action="run.approve", tool="send_email", run_id="r9"))
    assert len(events.events) == 1
    name, props = events.events[0]
    assert name == AUDIT_EVENT == "weft.audit"
    assert (props["action"], props["tool"], props["run_id"], props["caller"]) == ("run.approve", "send_email",
                                                                                   "r9", "t/a")


def test_trail_emits_the_event_even_when_the_store_fails() -> None:
    class Down(MemoryAuditStore):
        def append(self, record: AuditRecord) -> None:
            raise ConnectionError("down")

    events = RecordingEvents()
    trail = AuditTrail(Down(), events=events)
    with pytest.raises(ConnectionError):
        trail.append(record())
    assert [name for name, _ in events.events] == ["weft.audit"]


def test_trail_bounds_queries_and_defaults_since_to_the_retention() -> None:
    clock = Clock(T0 + timedelta(days=10))
    trail = AuditTrail(MemoryAuditStore(), AuditSettings(retention_days=5, query_max=3), clock=clock)
    for day in range(10):
        trail.append(record(day * 24 * 60))
    assert [r.time.day for r in trail.query(limit=100)] == [12, 13, 14]  # from day 5 on, 3 at most
    assert len(trail.query(limit=0)) == 1
    assert [r.time.day for r in trail.query(since=datetime(2026, 12, 7, 0, 0), limit=2)] == [7, 8]


def test_purge_never_removes_records_within_the_retention() -> None:
    clock = Clock(T0 + timedelta(days=10))
    trail = AuditTrail(MemoryAuditStore(), AuditSettings(retention_days=5), clock=clock)
    for day in range(10):
        trail.append(record(day * 24 * 60))
    assert trail.purge(T0 + timedelta(days=100)) == 5  # asked for everything: only what is past the retention
    assert trail.purge() == 0
    assert len(trail.query(since=T0, limit=100)) == 5


def test_settings_from_env() -> None:
    assert AuditSettings.from_env({}) == AuditSettings("weft-audit", 365, 1000)
    assert AuditSettings.from_env({"WEFT_AUDIT_CONTAINER": "c", "WEFT_AUDIT_RETENTION_DAYS": "7",
                                   "WEFT_AUDIT_QUERY_MAX": "5"}) == AuditSettings("c", 7, 5)
    with pytest.raises(ValueError, match="WEFT_AUDIT_RETENTION_DAYS"):
        AuditSettings.from_env({"WEFT_AUDIT_RETENTION_DAYS": "0"})


def test_build_audit_log_chooses_the_store(tmp_path: Path) -> None:
    local = build_audit_log(AuditSettings(), storage=PayloadSettings(), state_dir=tmp_path)
    assert isinstance(local.store, SqliteAuditStore) and local.store.path == tmp_path / "audit.sqlite"
    blob = build_audit_log(AuditSettings(container="aud"), state_dir=tmp_path,
                           storage=PayloadSettings(connection_string="UseDevelopmentStorage=true"))
    assert isinstance(blob.store, AppendBlobAuditStore) and blob.store.container.container_name == "aud"
