"""SQLite state for the devhost: instances, history, inbox (events and timers), activity work items, retry chains.

Only the engine thread mutates instances and history; other threads add inbox rows (start, raise, terminate) and read
status. Every method takes the store lock for one short transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["InboxRow", "InstanceRow", "RetryRow", "Store", "WorkItem"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    custom_status TEXT,
    parent_id TEXT,
    parent_task_id INTEGER,
    parent_generation INTEGER,
    generation INTEGER NOT NULL DEFAULT 0,
    next_seq INTEGER NOT NULL DEFAULT 0,
    actions TEXT NOT NULL DEFAULT '[]',
    version TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_status ON instances(status, created);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    pos INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (instance_id, pos)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    generation INTEGER,
    event TEXT NOT NULL,
    visible_at REAL NOT NULL,
    timer_id INTEGER
);
CREATE INDEX IF NOT EXISTS inbox_visible ON inbox(visible_at);
CREATE INDEX IF NOT EXISTS inbox_instance ON inbox(instance_id);
CREATE TABLE IF NOT EXISTS work_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    generation INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    input TEXT,
    lease_until REAL NOT NULL,
    dispatches INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS work_items_instance ON work_items(instance_id);
CREATE TABLE IF NOT EXISTS retries (
    instance_id TEXT NOT NULL,
    generation INTEGER NOT NULL,
    waiting_on INTEGER NOT NULL,
    phase TEXT NOT NULL,
    call_kind TEXT NOT NULL,
    name TEXT NOT NULL,
    input TEXT,
    attempt INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    interval_ms INTEGER NOT NULL,
    PRIMARY KEY (instance_id, generation, waiting_on)
) WITHOUT ROWID;
"""


@dataclass
class InstanceRow:
    id: str
    name: str
    status: str
    input: str | None
    output: str | None
    custom_status: str | None
    parent_id: str | None
    parent_task_id: int | None
    parent_generation: int | None
    generation: int
    next_seq: int
    actions: list[list[Any]]
    version: str | None
    created: float
    updated: float


@dataclass
class InboxRow:
    id: int
    instance_id: str
    generation: int | None
    event: dict[str, Any]
    visible_at: float
    timer_id: int | None


@dataclass
class WorkItem:
    id: int
    instance_id: str
    generation: int
    task_id: int
    name: str
    input: str | None
    dispatches: int


@dataclass
class RetryRow:
    waiting_on: int
    phase: str
    call_kind: str
    name: str
    input: str | None
    attempt: int
    max_attempts: int
    interval_ms: int


def _instance(row: sqlite3.Row) -> InstanceRow:
    data = dict(row)
    data["actions"] = json.loads(data["actions"])
    return InstanceRow(**data)


class Store:
    """The devhost's durable state. ``path=":memory:"`` keeps it in memory (tests)."""

    def __init__(self, path: str | Path = ".devhost/state.sqlite") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.RLock()
        self._readers = threading.local()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        reader: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        if reader is not None:  # this thread's; other threads' close with them
            reader.close()
            self._readers.conn = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work; nested calls join the outer transaction."""
        with self._lock:
            if self._conn.in_transaction:
                yield self._conn
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # ---- instances -------------------------------------------------------------------------------------------
    def create_instance(
        self,
        instance_id: str,
        name: str,
        input_json: str | None,
        started_event: dict[str, Any],
        now: float,
        *,
        parent: tuple[str, int, int] | None = None,
        version: str | None = None,
        replace_terminal: bool = True,
    ) -> bool:
        """Create an instance and queue its ExecutionStarted; False if a live instance already has this id."""
        with self.transaction() as conn:
            row = conn.execute("SELECT status FROM instances WHERE id=?", (instance_id,)).fetchone()
            if row is not None:
                if row["status"] in ("Pending", "Running", "Suspended") or not replace_terminal:
                    return False
                self._delete_instance(conn, instance_id)
            parent_id, parent_task, parent_gen = parent or (None, None, None)
            conn.execute(
                "INSERT INTO instances(id,name,status,input,parent_id,parent_task_id,parent_generation,version,"
                "created,updated) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (instance_id, name, "Pending", input_json, parent_id, parent_task, parent_gen, version, now, now),
            )
            conn.execute(
                "INSERT INTO inbox(instance_id,generation,event,visible_at) VALUES (?,?,?,?)",
                (instance_id, 0, json.dumps(started_event), now),
            )
            return True

    def get_instance(self, instance_id: str) -> InstanceRow | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM instances WHERE id=?", (instance_id,)).fetchone()
        return None if row is None else _instance(row)

    def read_instance(self, instance_id: str) -> InstanceRow | None:
        """:meth:`get_instance` as last committed, on this thread's own read connection (WAL lets it read while
        the engine writes), so a status query never queues behind an episode's transaction. In memory (one
        connection) it is :meth:`get_instance`."""
        if self.path == ":memory:":
            return self.get_instance(instance_id)
        reader: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        if reader is None:
            reader = sqlite3.connect(self.path, check_same_thread=True, isolation_level=None)
            reader.row_factory = sqlite3.Row
            self._readers.conn = reader
        row = reader.execute("SELECT * FROM instances WHERE id=?", (instance_id,)).fetchone()
        return None if row is None else _instance(row)

    def list_instances(
        self,
        *,
        statuses: Sequence[str] | None = None,
        created_from: float | None = None,
        created_to: float | None = None,
        prefix: str | None = None,
        limit: int | None = None,
    ) -> list[InstanceRow]:
        clauses: list[str] = []
        args: list[str | float | int] = []
        if statuses:
            clauses.append(f"status IN ({','.join('?' * len(statuses))})")
            args.extend(statuses)
        if created_from is not None:
            clauses.append("created >= ?")
            args.append(created_from)
        if created_to is not None:
            clauses.append("created <= ?")
            args.append(created_to)
        if prefix:
            clauses.append("substr(id, 1, ?) = ?")
            args.extend([len(prefix), prefix])
        sql = "SELECT * FROM instances"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [_instance(r) for r in rows]

    def save_instance(self, conn: sqlite3.Connection, inst: InstanceRow, *, new_input: bool = False) -> None:
        """Write the instance's state; its input only when ``new_input`` (a continue-as-new): rewriting an input of
        hundreds of kB on every episode made each episode cost grow with it."""
        columns = "status=?, input=?, output=?" if new_input else "status=?, output=?"
        conn.execute(
            f"UPDATE instances SET {columns}, custom_status=?, generation=?, next_seq=?, actions=?, updated=?"
            " WHERE id=?",
            (
                inst.status,
                *((inst.input,) if new_input else ()),
                inst.output,
                inst.custom_status,
                inst.generation,
                inst.next_seq,
                json.dumps(inst.actions),
                inst.updated,
                inst.id,
            ),
        )

    def purge(self, instance_ids: Iterable[str]) -> int:
        deleted = 0
        with self.transaction() as conn:
            for instance_id in instance_ids:
                row = conn.execute("SELECT status FROM instances WHERE id=?", (instance_id,)).fetchone()
                if row is None or row["status"] in ("Pending", "Running", "Suspended"):
                    continue
                self._delete_instance(conn, instance_id)
                deleted += 1
        return deleted

    def _delete_instance(self, conn: sqlite3.Connection, instance_id: str) -> None:
        for table, column in (
            ("instances", "id"),
            ("history", "instance_id"),
            ("inbox", "instance_id"),
            ("work_items", "instance_id"),
            ("retries", "instance_id"),
        ):
            conn.execute(f"DELETE FROM {table} WHERE {column}=?", (instance_id,))

    # ---- history ---------------------------------------------------------------------------------------------
    def load_history(self, instance_id: str) -> list[str]:
        """The history of the instance's current generation, as JSON texts in order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT event FROM history WHERE instance_id=? ORDER BY pos", (instance_id,)
            ).fetchall()
        return [r[0] for r in rows]

    def append_history(self, conn: sqlite3.Connection, instance_id: str, start: int, events: Sequence[str]) -> None:
        conn.executemany(
            "INSERT INTO history(instance_id,pos,event) VALUES (?,?,?)",
            [(instance_id, start + i, e) for i, e in enumerate(events)],
        )

    def reset_history(self, conn: sqlite3.Connection, instance_id: str) -> None:
        conn.execute("DELETE FROM history WHERE instance_id=?", (instance_id,))

    # ---- inbox -----------------------------------------------------------------------------------------------
    def add_inbox(
        self,
        instance_id: str,
        event: dict[str, Any],
        *,
        generation: int | None = None,
        visible_at: float,
        timer_id: int | None = None,
        conn: sqlite3.Connection | None = None,
    ) -> None:
        sql = "INSERT INTO inbox(instance_id,generation,event,visible_at,timer_id) VALUES (?,?,?,?,?)"
        args = (instance_id, generation, json.dumps(event), visible_at, timer_id)
        if conn is not None:
            conn.execute(sql, args)
            return
        with self._lock:
            self._conn.execute(sql, args)

    def ready_instances(self, now: float) -> list[str]:
        """Instances with inbox rows visible now, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT instance_id, MIN(id) AS first FROM inbox WHERE visible_at <= ? GROUP BY instance_id"
                " ORDER BY first",
                (now,),
            ).fetchall()
        return [r[0] for r in rows]

    def next_visible_at(self) -> float | None:
        with self._lock:
            row = self._conn.execute("SELECT MIN(visible_at) FROM inbox").fetchone()
        return None if row is None else row[0]

    def take_inbox(self, instance_id: str, now: float) -> list[InboxRow]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM inbox WHERE instance_id=? AND visible_at <= ? ORDER BY id", (instance_id, now)
            ).fetchall()
        return [
            InboxRow(r["id"], r["instance_id"], r["generation"], json.loads(r["event"]), r["visible_at"], r["timer_id"])
            for r in rows
        ]

    def delete_inbox(self, conn: sqlite3.Connection, ids: Sequence[int]) -> None:
        conn.executemany("DELETE FROM inbox WHERE id=?", [(i,) for i in ids])

    def cancel_timer(self, conn: sqlite3.Connection, instance_id: str, timer_id: int) -> None:
        conn.execute("DELETE FROM inbox WHERE instance_id=? AND timer_id=?", (instance_id, timer_id))

    def clear_pending(self, conn: sqlite3.Connection, instance_id: str, *, keep_events_for: int | None = None) -> None:
        """Drop timers, queued completions, work items and retry chains (terminal state or a new generation).

        With ``keep_events_for`` the instance's unprocessed external events move to that generation.
        """
        if keep_events_for is None:
            conn.execute("DELETE FROM inbox WHERE instance_id=?", (instance_id,))
        else:
            conn.execute(
                "UPDATE inbox SET generation=? WHERE instance_id=? AND json_extract(event,'$.EventType')=15",
                (keep_events_for, instance_id),
            )
            conn.execute(
                "DELETE FROM inbox WHERE instance_id=? AND json_extract(event,'$.EventType')!=15", (instance_id,)
            )
        conn.execute("DELETE FROM work_items WHERE instance_id=?", (instance_id,))
        conn.execute("DELETE FROM retries WHERE instance_id=?", (instance_id,))

    # ---- work items ------------------------------------------------------------------------------------------
    def add_work_items(
        self, conn: sqlite3.Connection, items: Sequence[tuple[str, int, int, str, str | None]], lease_until: float
    ) -> list[WorkItem]:
        """Insert ``(instance_id, generation, task_id, name, input)`` rows; returns them with their ids."""
        created = []
        for instance_id, generation, task_id, name, input_json in items:
            cursor = conn.execute(
                "INSERT INTO work_items(instance_id,generation,task_id,name,input,lease_until,dispatches)"
                " VALUES (?,?,?,?,?,?,1)",
                (instance_id, generation, task_id, name, input_json, lease_until),
            )
            created.append(WorkItem(cursor.lastrowid or 0, instance_id, generation, task_id, name, input_json, 1))
        return created

    def complete_work(self, completions: Sequence[tuple[int, dict[str, Any], str, int]], now: float) -> int:
        """Record activity results: each ``(work_item_id, event, instance_id, generation)`` becomes an inbox row
        and deletes its work item, in one transaction. Results for work items that no longer exist are dropped."""
        applied = 0
        with self.transaction() as conn:
            for work_id, result_event, instance_id, generation in completions:
                cursor = conn.execute("DELETE FROM work_items WHERE id=?", (work_id,))
                if cursor.rowcount == 0:
                    continue
                conn.execute(
                    "INSERT INTO inbox(instance_id,generation,event,visible_at) VALUES (?,?,?,?)",
                    (instance_id, generation, json.dumps(result_event), now),
                )
                applied += 1
        return applied

    def claim_expired_work(self, now: float, lease_until: float, exclude: set[int]) -> list[WorkItem]:
        """Work items whose lease ran out (their worker died): extend the lease and hand them out again."""
        with self.transaction() as conn:
            rows = conn.execute("SELECT * FROM work_items WHERE lease_until <= ?", (now,)).fetchall()
            items = []
            for r in rows:
                if r["id"] in exclude:
                    continue
                conn.execute(
                    "UPDATE work_items SET lease_until=?, dispatches=dispatches+1 WHERE id=?", (lease_until, r["id"])
                )
                items.append(
                    WorkItem(
                        r["id"],
                        r["instance_id"],
                        r["generation"],
                        r["task_id"],
                        r["name"],
                        r["input"],
                        r["dispatches"] + 1,
                    )
                )
        return items

    def renew_leases(self, ids: Sequence[int], lease_until: float) -> None:
        with self._lock:
            self._conn.executemany("UPDATE work_items SET lease_until=? WHERE id=?", [(lease_until, i) for i in ids])

    def pending_work_count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM work_items").fetchone()[0])

    # ---- retries ---------------------------------------------------------------------------------------------
    def put_retry(self, conn: sqlite3.Connection, instance_id: str, generation: int, retry: RetryRow) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO retries(instance_id,generation,waiting_on,phase,call_kind,name,input,attempt,"
            "max_attempts,interval_ms) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                instance_id,
                generation,
                retry.waiting_on,
                retry.phase,
                retry.call_kind,
                retry.name,
                retry.input,
                retry.attempt,
                retry.max_attempts,
                retry.interval_ms,
            ),
        )

    def delete_retry(self, conn: sqlite3.Connection, instance_id: str, generation: int, waiting_on: int) -> None:
        conn.execute(
            "DELETE FROM retries WHERE instance_id=? AND generation=? AND waiting_on=?",
            (instance_id, generation, waiting_on),
        )

    def retries_waiting(self, instance_id: str, generation: int) -> dict[int, RetryRow]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT waiting_on,phase,call_kind,name,input,attempt,max_attempts,interval_ms FROM retries"
                " WHERE instance_id=? AND generation=?",
                (instance_id, generation),
            ).fetchall()
        return {r["waiting_on"]: RetryRow(**dict(r)) for r in rows}


def new_instance_id() -> str:
    return uuid.uuid4().hex
