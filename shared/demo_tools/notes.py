"""A key-value note store in SQLite, shared by every process using the same file, with idempotent writes.

``note_put`` receives the call's idempotency key (``run_id:step_id``, the same across retries and restarts). The first
call with a key applies the write and records it; every later call with that key returns the recorded outcome
without writing again, and counts the delivery. :meth:`NoteStore.applications` exposes both counts, so tests can
check "delivered three times, applied once".

The same file holds the per-key attempt counters the ``flaky`` tool uses (see :mod:`shared.demo_tools.faults`).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from shared.errors import ToolArgumentsInvalid

__all__ = ["Applications", "NoteStore", "NoteTools"]

MAX_NOTE_BYTES = 64 * 1024
"""Largest note value (UTF-8 JSON bytes)."""
NoteKey = Annotated[str, Field(min_length=1, max_length=200)]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS notes (key TEXT PRIMARY KEY, value TEXT NOT NULL, version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS note_puts (idempotency_key TEXT PRIMARY KEY, note_key TEXT NOT NULL, "
    "version INTEGER NOT NULL, applied INTEGER NOT NULL, deliveries INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)


@dataclass(frozen=True)
class Applications:
    """What happened to the writes sent with one idempotency key."""

    applied: int
    """Times the write changed the store (1 when idempotency works)."""
    deliveries: int
    """Times a write with this key arrived."""


class NoteStore:
    """Notes and counters in one SQLite file; every change is one ``BEGIN IMMEDIATE`` transaction."""

    def __init__(self, path: str | os.PathLike[str], *, timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self._timeout_s = timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=timeout_s)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.commit()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self._timeout_s, isolation_level=None)
        conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: consistent, no fsync per change
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def put(self, key: str, value: Any, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Write ``value`` under ``key`` unless ``idempotency_key`` was already applied; return the outcome."""
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
        if len(text.encode("utf-8")) > MAX_NOTE_BYTES:
            raise ToolArgumentsInvalid(f"a note may be at most {MAX_NOTE_BYTES} bytes of JSON", field="args.value")
        with self._transaction() as conn:
            if idempotency_key:
                row = conn.execute(
                    "SELECT note_key, version FROM note_puts WHERE idempotency_key = ?", (idempotency_key,)
                ).fetchone()
                if row is not None:
                    conn.execute(
                        "UPDATE note_puts SET deliveries = deliveries + 1 WHERE idempotency_key = ?", (idempotency_key,)
                    )
                    return {"key": row[0], "version": row[1], "applied": False}
            current = conn.execute("SELECT version FROM notes WHERE key = ?", (key,)).fetchone()
            version = (current[0] if current else 0) + 1
            conn.execute(
                "INSERT INTO notes (key, value, version) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = excluded.version",
                (key, text, version),
            )
            if idempotency_key:
                conn.execute(
                    "INSERT INTO note_puts (idempotency_key, note_key, version, applied, deliveries) "
                    "VALUES (?, ?, ?, 1, 1)",
                    (idempotency_key, key, version),
                )
        return {"key": key, "version": version, "applied": True}

    def get(self, key: str) -> dict[str, Any]:
        """The note under ``key`` (``found: false`` if there is none)."""
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT value, version FROM notes WHERE key = ?", (key,)).fetchone()
        if row is None:
            return {"key": key, "found": False, "value": None, "version": 0}
        return {"key": key, "found": True, "value": json.loads(row[0]), "version": row[1]}

    def keys(self, prefix: str = "", limit: int = 100) -> dict[str, Any]:
        """Keys starting with ``prefix``, sorted, at most ``limit``."""
        with closing(self._connect()) as conn:
            rows = conn.execute(
                "SELECT key FROM notes WHERE substr(key, 1, ?) = ? ORDER BY key LIMIT ?",
                (len(prefix), prefix, limit + 1),
            ).fetchall()
        keys = [row[0] for row in rows]
        return {"keys": keys[:limit], "count": min(len(keys), limit), "truncated": len(keys) > limit}

    def applications(self, idempotency_key: str) -> Applications:
        """How often writes with ``idempotency_key`` arrived and were applied (zeros if never)."""
        with closing(self._connect()) as conn:
            row = conn.execute(
                "SELECT applied, deliveries FROM note_puts WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
        return Applications(*row) if row else Applications(0, 0)

    def next_count(self, counter: str) -> int:
        """Atomically increment the counter ``counter`` and return its new value (1 the first time)."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO counters (key, value) VALUES (?, 1) ON CONFLICT(key) DO UPDATE SET value = value + 1",
                (counter,),
            )
            return int(conn.execute("SELECT value FROM counters WHERE key = ?", (counter,)).fetchone()[0])


class NoteTools:
    """The note tools, bound to one :class:`NoteStore`."""

    def __init__(self, store: NoteStore) -> None:
        self.store = store

    def note_put(self, key: NoteKey, value: Any, idempotency_key: str = "") -> dict[str, Any]:
        """Save a note (any JSON value) under a key, replacing the previous value. Safe to retry: a repeated call
        of the same step is applied once.

        Returns the key, the note's new version and whether this call applied the write.

        Args:
            key: Name of the note, e.g. "trip/paris/budget".
            value: The JSON value to store (at most 64 KiB).
        """
        return self.store.put(key, value, idempotency_key=idempotency_key or None)

    def note_get(self, key: NoteKey) -> dict[str, Any]:
        """Read a note by key. Returns found=false and value=null when there is no such note.

        Args:
            key: Name of the note.
        """
        return self.store.get(key)

    def note_list(
        self, prefix: Annotated[str, Field(max_length=200)] = "", limit: Annotated[int, Field(ge=1, le=1000)] = 100
    ) -> dict[str, Any]:
        """List note keys, sorted, optionally only those starting with a prefix.

        Args:
            prefix: Only keys starting with this text, e.g. "trip/".
            limit: Return at most this many keys.
        """
        return self.store.keys(prefix, limit)
