"""A SQLite file that several threads and processes on one machine share: the local stores of the breaker, quotas,
audit trail and run index (Blob/Table Storage take their place in Azure)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

__all__ = ["SqliteFile"]

_SETUP_ATTEMPTS = 50


class SqliteFile:
    """WAL mode, a busy timeout, and one connection per thread kept open (closing the last connection of a WAL
    database checkpoints it: an fsync per operation). ``schema`` (statements separated by ``;``) runs once at start.

    Switching a file to WAL waits for no busy handler: processes opening the same new file at once get "database is
    locked" straight away, so setting up is retried (a few seconds at most) instead of failing a store's creation.
    """

    def __init__(self, path: str | os.PathLike[str], schema: str, *, timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self._timeout_s = timeout_s
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(_SETUP_ATTEMPTS):
            try:
                conn = self._connect()
                try:
                    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                        conn.execute("PRAGMA journal_mode=WAL")
                    conn.executescript(schema)
                finally:
                    conn.close()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == _SETUP_ATTEMPTS - 1:
                    raise
                time.sleep(0.02 * (attempt + 1))

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self._timeout_s, isolation_level=None)
        conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: consistent, no fsync per change
        return conn

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; ``BEGIN IMMEDIATE`` for read-modify-write)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn
