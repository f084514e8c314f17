"""Who owns each run, and the list of runs per caller: the index every instance reads before touching a run.

A run belongs to the caller who started it. The orchestration's own store cannot answer "this caller's runs, newest
first, one page" without reading every instance, so each admitted run gets an :class:`RunEntry` here first:

- :meth:`RunIndex.claim` inserts the entry only if no entry has that run id yet, atomically, and otherwise returns
  the entry that is there. This is what makes an idempotency key safe under concurrency: of twenty identical
  submissions exactly one claims the run and starts it; the others find its entry and answer with the same run.
- :meth:`RunIndex.get` answers who owns a run (read, cancel, approve are refused with 404 for anyone else).
- :meth:`RunIndex.page` lists one caller's runs (or everyone's, for ``Runs.ReadAll``) newest first, one page at a
  time with an opaque continuation token: the cost of a page does not grow with the number of runs stored.

Stores: Azure Table Storage when storage is configured (:class:`TableRunIndex`: the entry in partition ``run``,
keyed by run id, and a listing entry per owner and one for everyone, keyed by inverted time), else SQLite under
``WEFT_STATE_DIR`` (:class:`SqliteRunIndex`: several local processes share it). The app reads either through
:class:`CachedRunIndex`: an entry never changes once claimed, so a client following its run (a GET every few
hundred milliseconds) costs one storage read per instance, not one per GET.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from shared.errors import InvalidRequest, UpstreamUnavailable
from shared.sqlite_file import SqliteFile
from shared.ttl_cache import TtlLruCache

__all__ = ["CachedRunIndex", "RunEntry", "RunIndex", "SqliteRunIndex", "TableRunIndex", "older_than",
           "owner_tag", "purged", "read_entry"]

_MAX_TOKEN_CHARS = 1024
_MAX_TICKS = 10**19  # inverted microsecond timestamps sort newest first as fixed-width strings
_CLAIM_ATTEMPTS = 3
"""Inserts one claim tries: another is tried only when a purge removed the entry in the way between the insert and
the read of it, and retention purges only old runs, so a second attempt settles it."""


@dataclass(frozen=True)
class RunEntry:
    """One admitted run: its id, its owner, and what identifies the request that started it."""

    run_id: str
    owner: str
    """The owning caller's key (``<tenant>/<object id>``)."""
    owner_name: str
    mode: str
    created_at: datetime
    request_sha256: str
    """SHA-256 of the canonical request: the same idempotency key with another body is a conflict."""
    via: str = "http"
    """How the run came in: ``http``, ``queue`` or ``mcp``."""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "created_at": self.created_at.isoformat()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunEntry:
        return cls(**{**data, "created_at": datetime.fromisoformat(data["created_at"])})


class RunIndex(Protocol):
    def claim(self, entry: RunEntry) -> RunEntry | None:
        """Insert ``entry`` unless its run id has one already; None when inserted, else the entry that is there."""
        ...

    def get(self, run_id: str) -> RunEntry | None: ...

    def page(self, owner: str | None, limit: int, continuation: str | None = None
             ) -> tuple[list[RunEntry], str | None]:
        """Newest first: ``owner``'s runs (everyone's when None), at most ``limit``, and the token of the next page."""
        ...

    def remove(self, run_id: str) -> None:
        """Forget a run (retention purge); idempotent."""
        ...

    def cached(self, run_id: str) -> RunEntry | None:
        """The entry of ``run_id`` if this index holds it in memory (no I/O: callable on an event loop)."""
        ...

    def forget(self, run_id: str) -> None:
        """Drop what this index holds in memory about ``run_id`` (the next :meth:`get` reads storage)."""
        ...


class CachedRunIndex:
    """A :class:`RunIndex` that keeps the entries it read or claimed in an LRU cache: at most ``entries`` of them,
    each for ``ttl_s`` seconds. Only retention removes an entry, so the cache can only be stale about a run another
    instance purged, and for at most ``ttl_s`` (:func:`purged` re-reads when Durable no longer knows a run);
    :meth:`remove` and :meth:`forget` drop it at once, and a read that overlapped them is not cached."""

    def __init__(self, inner: RunIndex, *, entries: int = 10_000, ttl_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self._memory: TtlLruCache[RunEntry] = TtlLruCache(entries if ttl_s > 0 else 0, ttl_s, clock)
        self._lock = threading.Lock()  # a forget and a cache fill that overlapped it are ordered by it
        self._forgets = 0  # bumped by every forget: a storage read that overlapped one is not cached

    def cached(self, run_id: str) -> RunEntry | None:
        """See :meth:`RunIndex.cached` (fresh entries only)."""
        return self._memory.get(run_id)

    def _remember(self, entry: RunEntry, forgets: int) -> None:
        with self._lock:
            if forgets == self._forgets:
                self._memory.put(entry.run_id, entry)

    def claim(self, entry: RunEntry) -> RunEntry | None:
        """See :meth:`RunIndex.claim`."""
        forgets = self._forgets
        existing = self.inner.claim(entry)
        self._remember(existing or entry, forgets)
        return existing

    def get(self, run_id: str) -> RunEntry | None:
        """See :meth:`RunIndex.get`."""
        entry = self.cached(run_id)
        if entry is None:
            forgets = self._forgets
            entry = self.inner.get(run_id)
            if entry is not None:
                self._remember(entry, forgets)
        return entry

    def page(self, owner: str | None, limit: int, continuation: str | None = None
             ) -> tuple[list[RunEntry], str | None]:
        """See :meth:`RunIndex.page` (always read from the store: new runs must show)."""
        return self.inner.page(owner, limit, continuation)

    def forget(self, run_id: str) -> None:
        """See :meth:`RunIndex.forget`."""
        with self._lock:
            self._memory.pop(run_id)
            self._forgets += 1

    def remove(self, run_id: str) -> None:
        """See :meth:`RunIndex.remove`."""
        self.forget(run_id)
        self.inner.remove(run_id)
        self.forget(run_id)


async def purged(index: RunIndex, run_id: str) -> bool:
    """Whether the run whose entry ``index`` gave is gone from storage after all: asked when Durable no longer knows
    the run, since the entry may have come from a cache after another instance's retention purge (read again from
    storage; the cache forgets it)."""
    index.forget(run_id)
    return await asyncio.to_thread(index.get, run_id) is None


async def read_entry(index: RunIndex, run_id: str) -> RunEntry | None:
    """``index.get(run_id)`` off the event loop, unless ``index`` holds the entry in memory."""
    entry = index.cached(run_id)
    return entry if entry is not None else await asyncio.to_thread(index.get, run_id)


def _claim(insert: Callable[[], bool], read: Callable[[], RunEntry | None]) -> RunEntry | None:
    """:meth:`RunIndex.claim` over a store's atomic ``insert`` (whether it inserted) and ``read``: an entry in the
    way may be purged before it is read, and then the claim inserts again (it must not report an insert that did not
    happen)."""
    for _ in range(_CLAIM_ATTEMPTS):
        if insert():
            return None
        existing = read()
        if existing is not None:
            return existing
    raise UpstreamUnavailable("the run's index entry was purged under every claim of it; try again")


def older_than(moment: datetime) -> str:
    """A continuation token from which :meth:`RunIndex.page` lists the runs created before ``moment`` (newest
    first): retention starts there instead of paging through every recent run."""
    return _encode_token({"after": _inverted(moment) + "~"})


def owner_tag(owner: str) -> str:
    """A short, storage-key-safe name for an owner (partition keys allow no ``/``)."""
    return hashlib.sha256(owner.encode()).hexdigest()[:32]


def _inverted(moment: datetime) -> str:
    ticks = int(moment.timestamp() * 1_000_000)
    return f"{_MAX_TICKS - ticks:020d}"


def _encode_token(position: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_token(token: str, keys: tuple[str, ...]) -> dict[str, str]:
    position: Any = None
    if len(token) <= _MAX_TOKEN_CHARS:
        try:
            position = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        except (ValueError, RecursionError):
            position = None
    if not isinstance(position, dict) or set(position) != set(keys) or not all(
            isinstance(v, str) and len(v) <= 512 for v in position.values()):
        raise InvalidRequest("continuation is not a token this API returned", field="continuation")
    return position


class SqliteRunIndex:
    """The index in one SQLite file: several processes on one machine share it (WAL, busy timeout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = SqliteFile(path, (
            "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, owner TEXT NOT NULL, sort_key TEXT NOT NULL,"
            " entry TEXT NOT NULL);"
            "CREATE INDEX IF NOT EXISTS runs_by_owner ON runs (owner, sort_key);"
            "CREATE INDEX IF NOT EXISTS runs_by_time ON runs (sort_key)"))

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        yield self._file.connection()

    def claim(self, entry: RunEntry) -> RunEntry | None:
        return _claim(lambda: self._insert(entry), lambda: self.get(entry.run_id))

    def _insert(self, entry: RunEntry) -> bool:
        with self._connection() as db:
            return db.execute(
                "INSERT OR IGNORE INTO runs (run_id, owner, sort_key, entry) VALUES (?, ?, ?, ?)",
                (entry.run_id, entry.owner, _inverted(entry.created_at) + entry.run_id, json.dumps(entry.to_json())),
            ).rowcount > 0

    def get(self, run_id: str) -> RunEntry | None:
        with self._connection() as db:
            row = db.execute("SELECT entry FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return RunEntry.from_json(json.loads(row[0])) if row else None

    def page(self, owner: str | None, limit: int, continuation: str | None = None
             ) -> tuple[list[RunEntry], str | None]:
        after = _decode_token(continuation, ("after",))["after"] if continuation else ""
        where, args = "sort_key > ?", [after]
        if owner is not None:
            where, args = where + " AND owner = ?", [*args, owner]
        with self._connection() as db:
            rows = db.execute(f"SELECT sort_key, entry FROM runs WHERE {where} ORDER BY sort_key LIMIT ?",
                              (*args, limit + 1)).fetchall()
        entries = [RunEntry.from_json(json.loads(row[1])) for row in rows[:limit]]
        token = _encode_token({"after": rows[limit - 1][0]}) if len(rows) > limit else None
        return entries, token

    def remove(self, run_id: str) -> None:
        with self._connection() as db:
            db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))

    def cached(self, run_id: str) -> RunEntry | None:
        """See :meth:`RunIndex.cached`: nothing is held in memory."""
        return None

    def forget(self, run_id: str) -> None:
        """See :meth:`RunIndex.forget`: nothing is held in memory."""


class TableRunIndex:
    """The index in Azure Table Storage, shared by every instance.

    Partition ``run`` holds one entity per run (row key = run id), created with ``create_entity`` so that exactly
    one claim of a run id wins. Listing entities (row key = inverted creation time + run id) live in the owner's
    partition ``o-<owner tag>`` and in partition ``all``; they are written after the claim and written again by any
    later claim of the same run, so a crash between the two writes heals on the next submission of that key.
    """

    _RUN_PARTITION = "run"
    _ALL_PARTITION = "all"

    def __init__(self, table: Any) -> None:
        self.table = table
        self._created = False

    def _ensure(self) -> None:
        if not self._created:
            from azure.core.exceptions import ResourceExistsError

            with contextlib.suppress(ResourceExistsError):
                self.table.create_table()
            self._created = True

    def _listing(self, entry: RunEntry) -> None:
        sort_key = _inverted(entry.created_at) + entry.run_id
        body = {"entry": json.dumps(entry.to_json())}
        for partition in (f"o-{owner_tag(entry.owner)}", self._ALL_PARTITION):
            self.table.upsert_entity({"PartitionKey": partition, "RowKey": sort_key, **body})

    def claim(self, entry: RunEntry) -> RunEntry | None:
        self._ensure()
        existing = _claim(lambda: self._insert(entry), lambda: self.get(entry.run_id))
        if existing is None or existing.owner == entry.owner:
            self._listing(existing or entry)
        return existing

    def _insert(self, entry: RunEntry) -> bool:
        from azure.core.exceptions import ResourceExistsError

        try:
            self.table.create_entity({"PartitionKey": self._RUN_PARTITION, "RowKey": entry.run_id,
                                      "entry": json.dumps(entry.to_json())})
        except ResourceExistsError:
            return False
        return True

    def get(self, run_id: str) -> RunEntry | None:
        from azure.core.exceptions import ResourceNotFoundError

        self._ensure()
        try:
            entity = self.table.get_entity(self._RUN_PARTITION, run_id)
        except ResourceNotFoundError:
            return None
        return RunEntry.from_json(json.loads(entity["entry"]))

    def page(self, owner: str | None, limit: int, continuation: str | None = None
             ) -> tuple[list[RunEntry], str | None]:
        self._ensure()
        partition = self._ALL_PARTITION if owner is None else f"o-{owner_tag(owner)}"
        after = _decode_token(continuation, ("after",))["after"] if continuation else ""
        query = "PartitionKey eq @pk and RowKey gt @after"
        entities = self.table.query_entities(query, parameters={"pk": partition, "after": after},
                                             results_per_page=limit + 1, select=["RowKey", "entry"])
        rows: list[tuple[str, str]] = []
        for entity in entities:
            rows.append((entity["RowKey"], entity["entry"]))
            if len(rows) > limit:
                break
        entries = [RunEntry.from_json(json.loads(raw)) for _, raw in rows[:limit]]
        token = _encode_token({"after": rows[limit - 1][0]}) if len(rows) > limit else None
        return entries, token

    def remove(self, run_id: str) -> None:
        entry = self.get(run_id)
        if entry is None:
            return
        sort_key = _inverted(entry.created_at) + entry.run_id
        for partition, row in ((f"o-{owner_tag(entry.owner)}", sort_key), (self._ALL_PARTITION, sort_key),
                               (self._RUN_PARTITION, run_id)):
            self.table.delete_entity(partition, row)

    def cached(self, run_id: str) -> RunEntry | None:
        """See :meth:`RunIndex.cached`: nothing is held in memory."""
        return None

    def forget(self, run_id: str) -> None:
        """See :meth:`RunIndex.forget`: nothing is held in memory."""
