"""Where audit records are kept (see :mod:`shared.identity.audit` for what they are): append blobs, SQLite, memory.

Each store implements :class:`~shared.identity.audit.AuditLog` without bounds or retention of its own
(:class:`~shared.identity.audit.AuditTrail` applies those).
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.identity.audit import AuditRecord, as_utc
from shared.sqlite_file import SqliteFile

__all__ = ["ROTATE_AT_BLOCKS", "AppendBlobAuditStore", "MemoryAuditStore", "SqliteAuditStore"]

logger = logging.getLogger(__name__)

ROTATE_AT_BLOCKS = 49_000
"""Committed blocks after which writers move on to the hour's next part: an append blob takes at most 50,000 blocks,
and the headroom covers writers on other instances that have not seen the count yet."""

_MAX_PARTS = 1_000
"""Parts of one hour a writer walks through before giving up (49 million records an hour)."""


def _matches(record: AuditRecord, run_id: str | None, caller: str | None, since: datetime | None) -> bool:
    return ((run_id is None or record.run_id == run_id) and (caller is None or record.caller == caller)
            and (since is None or record.time >= since))


def _micros(moment: datetime) -> int:
    return int(as_utc(moment).timestamp() * 1_000_000)


class MemoryAuditStore:
    """Records in a list, for one process (unit tests)."""

    def __init__(self) -> None:
        self._records: list[AuditRecord] = []
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def append(self, record: AuditRecord) -> None:
        """See :meth:`AuditLog.append`."""
        with self._lock:
            if record.id not in self._ids:
                self._ids.add(record.id)
                self._records.append(record)

    def query(self, *, run_id: str | None = None, caller: str | None = None, since: datetime | None = None,
              limit: int = 100) -> list[AuditRecord]:
        """See :meth:`AuditLog.query`."""
        with self._lock:
            found = sorted((r for r in self._records if _matches(r, run_id, caller, since)), key=lambda r: r.time)
        return found[:limit]

    def purge(self, older_than: datetime) -> int:
        """See :meth:`AuditLog.purge`."""
        with self._lock:
            kept = [r for r in self._records if r.time >= older_than]
            removed, self._records = len(self._records) - len(kept), kept
        return removed


class SqliteAuditStore:
    """Records in a SQLite file on one machine (``<WEFT_STATE_DIR>/audit.sqlite``), insert-only: a trigger refuses
    any update, and a record whose id is already stored is ignored."""

    def __init__(self, path: str | os.PathLike[str], *, timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self._file = SqliteFile(path, (
            "CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
            "time_us INTEGER NOT NULL, caller TEXT NOT NULL, run_id TEXT, record TEXT NOT NULL);"
            "CREATE INDEX IF NOT EXISTS audit_time ON audit (time_us);"
            "CREATE INDEX IF NOT EXISTS audit_run ON audit (run_id, time_us);"
            "CREATE INDEX IF NOT EXISTS audit_caller ON audit (caller, time_us);"
            "CREATE TRIGGER IF NOT EXISTS audit_append_only BEFORE UPDATE ON audit "
            "BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;"), timeout_s=timeout_s)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        yield self._file.connection()

    def append(self, record: AuditRecord) -> None:
        """See :meth:`AuditLog.append`."""
        with self._connection() as conn:
            conn.execute("INSERT OR IGNORE INTO audit (id, time_us, caller, run_id, record) VALUES (?, ?, ?, ?, ?)",
                         (record.id, _micros(record.time), record.caller, record.run_id, record.model_dump_json()))

    def query(self, *, run_id: str | None = None, caller: str | None = None, since: datetime | None = None,
              limit: int = 100) -> list[AuditRecord]:
        """See :meth:`AuditLog.query`."""
        clauses = ["time_us >= ?"]
        params: list[int | str] = [_micros(since) if since is not None else 0]
        if run_id is not None:
            clauses.append("run_id = ?")
            params.append(run_id)
        if caller is not None:
            clauses.append("caller = ?")
            params.append(caller)
        sql = f"SELECT record FROM audit WHERE {' AND '.join(clauses)} ORDER BY time_us, seq LIMIT ?"
        with self._connection() as conn:
            rows = conn.execute(sql, (*params, limit)).fetchall()
        return [AuditRecord.model_validate_json(row[0]) for row in rows]

    def purge(self, older_than: datetime) -> int:
        """See :meth:`AuditLog.purge`."""
        with self._connection() as conn:
            return conn.execute("DELETE FROM audit WHERE time_us < ?", (_micros(older_than),)).rowcount


_NAME = re.compile(r"^audit/(\d{4})/(\d{2})/(\d{2})/(\d{2})/part-(\d{4})\.jsonl$")


def _error_code(exc: Exception) -> str:
    """The storage error code the SDK puts on its exceptions (``error_code``: a string or a ``StorageErrorCode``)."""
    code = getattr(exc, "error_code", None) or ""
    return str(getattr(code, "value", code))


def _blob_name(hour: datetime, part: int) -> str:
    return f"audit/{hour:%Y/%m/%d/%H}/part-{part:04d}.jsonl"


def _parse_name(name: str) -> tuple[datetime, int] | None:
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    year, month, day, hour, part = (int(g) for g in match.groups())
    return datetime(year, month, day, hour, tzinfo=UTC), part


class AppendBlobAuditStore:
    """Append blobs ``audit/YYYY/MM/DD/HH/part-NNNN.jsonl`` in a container (``azure.storage.blob.ContainerClient``).

    A record goes to the blob of the hour it is appended in (the injected wall clock), as one ``append_block`` of
    one JSON line, so writers on every instance can append to the same blob at once. The blob is created only when
    missing (``If-None-Match: *``): an existing blob is never replaced. When a block's response shows
    :data:`ROTATE_AT_BLOCKS` committed blocks, or the service refuses a block over the limit, the writer moves on
    to the next part of the hour.
    """

    def __init__(self, container_client: Any, *, clock: Callable[[], float] = time.time,
                 rotate_at: int = ROTATE_AT_BLOCKS) -> None:
        self.container = container_client
        self._clock = clock
        self._rotate_at = rotate_at
        self._parts: dict[datetime, int] = {}
        self._lock = threading.Lock()

    def append(self, record: AuditRecord) -> None:
        """See :meth:`AuditLog.append`."""
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

        line = record.to_line()
        hour = datetime.fromtimestamp(self._clock(), UTC).replace(minute=0, second=0, microsecond=0)
        with self._lock:
            part = self._parts.get(hour, 0)
        for _ in range(_MAX_PARTS + 3):  # each pass either appends, creates what is missing, or moves one part on
            blob = self.container.get_blob_client(_blob_name(hour, part))
            try:
                response = blob.append_block(line)
            except ResourceNotFoundError as exc:
                if _error_code(exc) == "ContainerNotFound":
                    self._create_container()
                try:
                    blob.create_append_blob(match_condition=MatchConditions.IfMissing)
                except ResourceExistsError:
                    logger.debug("audit blob created by another writer")
                continue
            except HttpResponseError as exc:
                if _error_code(exc) != "BlockCountExceedsLimit":
                    raise
                part += 1
                continue
            if int(response.get("blob_committed_block_count") or 0) >= self._rotate_at:
                part += 1
            with self._lock:
                self._parts = {h: p for h, p in self._parts.items() if h >= hour}  # forget past hours
                self._parts[hour] = max(part, self._parts.get(hour, 0))
            return
        raise RuntimeError(f"audit record {record.id}: no append blob of hour {hour:%Y-%m-%dT%H} took it")

    def _create_container(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            self.container.create_container()
        except ResourceExistsError:
            logger.debug("audit container already exists")

    def _blobs(self) -> list[tuple[datetime, int, str]]:
        """Every audit blob as (hour, part, name), oldest first."""
        from azure.core.exceptions import ResourceNotFoundError

        found: list[tuple[datetime, int, str]] = []
        try:
            for item in self.container.list_blobs(name_starts_with="audit/"):
                parsed = _parse_name(item.name)
                if parsed is not None:
                    found.append((*parsed, item.name))
        except ResourceNotFoundError:
            return []
        return sorted(found)

    def query(self, *, run_id: str | None = None, caller: str | None = None, since: datetime | None = None,
              limit: int = 100) -> list[AuditRecord]:
        """See :meth:`AuditLog.query`: reads the hour blobs from ``since``'s hour on (and the
        hour before, for clocks that disagree), oldest first, until ``limit`` records matched."""
        start = since - timedelta(hours=2) if since is not None else None
        found: list[AuditRecord] = []
        seen: set[str] = set()
        for hour, _, name in self._blobs():
            if start is not None and hour < start:
                continue
            for line in self.container.download_blob(name).readall().splitlines():
                record = self._parse_line(line, name)
                if record is None or record.id in seen or not _matches(record, run_id, caller, since):
                    continue
                seen.add(record.id)
                found.append(record)
            if len(found) >= limit:
                break
        found.sort(key=lambda r: r.time)
        return found[:limit]

    @staticmethod
    def _parse_line(line: bytes, name: str) -> AuditRecord | None:
        if not line.strip():
            return None
        try:
            return AuditRecord.model_validate_json(line)
        except ValidationError:
            logger.warning("audit blob %s holds a line that is not a record; skipped", name)
            return None

    def purge(self, older_than: datetime) -> int:
        """See :meth:`AuditLog.purge`: deletes the hour blobs that end before ``older_than``. A blob the service
        keeps (its immutability period has not ended, or it is leased) stays and is not counted."""
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        removed = 0
        for hour, _, name in self._blobs():
            if hour + timedelta(hours=1) > older_than:
                break
            blob = self.container.get_blob_client(name)
            try:
                blocks = int(blob.get_blob_properties().append_blob_committed_block_count or 0)
                blob.delete_blob()
            except ResourceNotFoundError:
                continue  # purged by another instance
            except HttpResponseError as exc:
                logger.info("audit blob %s is kept by the service (%s)", name, _error_code(exc) or exc.status_code)
                continue
            removed += blocks
        return removed
