"""Where per-caller quota records live (see :mod:`shared.identity.quotas` for what they mean).

Each change is a read-modify-write that is atomic across every process sharing the store:

- :class:`TableQuotaStore` — Azure Table Storage (``azure-data-tables``): one entity per caller and record, replaced
  with ETag optimistic concurrency (``match_condition=IfNotModified``); a lost race re-reads and re-applies the change,
  a bounded number of times, so two instances never both spend the last token.
- :class:`SqliteQuotaStore` — one SQLite file for one machine (devhost processes share it), each change inside
  ``BEGIN IMMEDIATE``.
- :class:`MemoryQuotaStore` — one process, for unit tests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from shared.sqlite_file import SqliteFile

__all__ = [
    "Change",
    "MemoryQuotaStore",
    "QuotaContention",
    "QuotaStore",
    "SqliteQuotaStore",
    "State",
    "TableQuotaStore",
    "caller_partition",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
State = dict[str, Any]
Change = Callable[[State | None], tuple[State | None, T]]
"""A pure function of the stored state (None: no record yet) giving ``(new state or None to leave it, result)``."""



class QuotaContention(Exception):
    """A change lost more ETag races than it may retry."""


class QuotaStore(Protocol):
    """Where quota records live; ``update`` must be atomic across every process sharing the store."""

    def get(self, caller_key: str, kind: str) -> State | None:
        """The stored record, or None."""
        ...

    def update(self, caller_key: str, kind: str, change: Change[T]) -> T:
        """Apply ``change`` to the record atomically and return its result; ``change`` must be pure (optimistic
        stores call it again after losing a race). Raises :class:`QuotaContention` after too many lost races."""
        ...


class MemoryQuotaStore:
    """Records in a dict, for one process (unit tests)."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], State] = {}
        self._lock = threading.Lock()

    def get(self, caller_key: str, kind: str) -> State | None:
        """See :meth:`QuotaStore.get`."""
        with self._lock:
            return self._records.get((caller_key, kind))

    def update(self, caller_key: str, kind: str, change: Change[T]) -> T:
        """See :meth:`QuotaStore.update`."""
        with self._lock:
            new, result = change(self._records.get((caller_key, kind)))
            if new is not None:
                self._records[(caller_key, kind)] = new
            return result


class SqliteQuotaStore:
    """Records in a SQLite file shared by every process on one machine (devhost, tests)."""

    def __init__(self, path: str | os.PathLike[str], *, timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self._file = SqliteFile(path, "CREATE TABLE IF NOT EXISTS quota (caller TEXT NOT NULL, kind TEXT NOT NULL, "
                                      "state TEXT NOT NULL, PRIMARY KEY (caller, kind))", timeout_s=timeout_s)

    def _conn(self) -> sqlite3.Connection:
        """One connection per thread, kept open: a quota is charged on every request."""
        return self._file.connection()

    @staticmethod
    def _read(conn: sqlite3.Connection, caller_key: str, kind: str) -> State | None:
        row = conn.execute("SELECT state FROM quota WHERE caller = ? AND kind = ?", (caller_key, kind)).fetchone()
        return json.loads(row[0]) if row else None

    def get(self, caller_key: str, kind: str) -> State | None:
        """See :meth:`QuotaStore.get`."""
        return self._read(self._conn(), caller_key, kind)

    def update(self, caller_key: str, kind: str, change: Change[T]) -> T:
        """See :meth:`QuotaStore.update`: the read and the write share one ``BEGIN IMMEDIATE`` transaction."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            new, result = change(self._read(conn, caller_key, kind))
            if new is not None:
                conn.execute("INSERT INTO quota (caller, kind, state) VALUES (?, ?, ?) "
                             "ON CONFLICT(caller, kind) DO UPDATE SET state = excluded.state",
                             (caller_key, kind, json.dumps(new)))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return result


def caller_partition(caller_key: str) -> str:
    """The table partition key of a caller: table keys allow no ``/``, ``\\``, ``#`` or ``?``."""
    return hashlib.sha256(caller_key.encode()).hexdigest()[:32]


class TableQuotaStore:
    """One entity per caller and record (partition: a hash of the caller key, row: ``rate``/``runs``; the caller key
    and the JSON state are properties), replaced with ETag optimistic concurrency.

    ``table_client`` is an ``azure.data.tables.TableClient``; the table is created on first use.
    """

    def __init__(self, table_client: Any, *, max_attempts: int = 10,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.table = table_client
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._created = False

    def _ensure(self) -> None:
        if self._created:
            return
        from azure.core.exceptions import ResourceExistsError

        try:
            self.table.create_table()
        except ResourceExistsError:
            logger.debug("quota table already exists")
        self._created = True

    def _read(self, caller_key: str, kind: str) -> tuple[State | None, str | None]:
        from azure.core.exceptions import ResourceNotFoundError

        self._ensure()
        try:
            entity = self.table.get_entity(caller_partition(caller_key), kind)
        except ResourceNotFoundError:
            return None, None
        return json.loads(entity["state"]), entity.metadata["etag"]

    def get(self, caller_key: str, kind: str) -> State | None:
        """See :meth:`QuotaStore.get`."""
        return self._read(caller_key, kind)[0]

    def update(self, caller_key: str, kind: str, change: Change[T]) -> T:
        """See :meth:`QuotaStore.update`: create the entity if absent, else replace it only if its ETag is still the
        one read; a lost race (409 on create, 412 on replace, 404 when it vanished) re-reads and tries again."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        for attempt in range(self._max_attempts):
            state, etag = self._read(caller_key, kind)
            new, result = change(state)
            if new is None:
                return result
            entity = {"PartitionKey": caller_partition(caller_key), "RowKey": kind, "caller": caller_key,
                      "state": json.dumps(new, separators=(",", ":"))}
            try:
                if etag is None:
                    self.table.create_entity(entity)
                else:
                    self.table.update_entity(entity, mode=UpdateMode.REPLACE, etag=etag,
                                             match_condition=MatchConditions.IfNotModified)
                return result
            except (ResourceExistsError, ResourceModifiedError):
                self._sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))  # full jitter
            except ResourceNotFoundError:
                self._created = False  # the table itself may be gone: create it again on the next read
        raise QuotaContention(f"quota record {kind!r}: gave up after {self._max_attempts} write conflicts")
