"""A journal of a run's completed tool calls, kept next to its payloads, so a crash never repeats finished work.

Its records, all in the payload store's own storage (the local folder of a :class:`LocalPayloadStore` or the
container of a :class:`BlobPayloadStore`), under ``journal/<run id>/``:

* ``calls/<seq>.json`` — one entry per completed call, by call sequence (1, 2, … in the order the code made them):
  the tool, the SHA-256 of its arguments and its outcome. A restarted inline run reads :meth:`CallJournal.completed`
  and hands the code the journalled outcome instead of calling the tool again (after checking tool and arguments
  hash still match: a mismatch means the code is not deterministic and must not be replayed from the journal).
* ``begun/<sha256 of call key>`` — an execution marker written *before* a non-idempotent tool runs.
  :meth:`CallJournal.begin` creates it atomically and says whether it already existed: ``True`` means this call was
  dispatched before (a crash or a redelivery), so the tool may already have run and must not run again unless it
  opts in; the step record then says ``redelivered``.

* ``settled/<sha256 of call key>/<attempt>.json`` — how each delivery of a ``call_tool`` activity ended, written
  before it reports to Durable. :meth:`CallJournal.dispatch` reads them with the markers to tell a Durable *retry*
  (the previous attempt settled with a retryable failure: a new attempt, allowed by the retry policy) from a
  *redelivery* (this attempt began and never settled: a crash), and hands back a final outcome an earlier delivery
  settled with but could not report (so the tool does not run again for it).
* ``canceled`` — written once (first write wins) when the run is canceled, under the *root* run's folder (a task's
  sub-runs ``<run id>:turn<n>`` share it). Durable's terminate does not reach a run's sub-orchestrations nor its
  activities already queued, so :meth:`CallJournal.dispatch` reads it before a side-effecting call runs: a canceled
  run's side effects stop at the boundary where they happen, whichever orchestration still asks for them. The
  executor's gate (:meth:`CallJournal.refuse_if_canceled`) reads it once more at the last moment, after any wait for
  a slot or a thread: two reads per side-effecting call, deliberately — the first keeps a canceled delivery from
  writing an execution marker (its redelivery would otherwise report the call as possibly executed).

The first write of an entry wins (a second ``record`` of the same sequence returns the journalled one), so two
instances racing after a redelivery agree on one outcome.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import threading
import weakref
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from shared.errors import InvalidRequest, RunCanceled
from shared.payloads import BlobPayloadStore, LocalPayloadStore, PayloadStore, root_run_id

__all__ = ["CallJournal", "Dispatch", "JournalEntry", "args_sha256", "journal_for"]

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")
_PREFIX = "journal"


def _run_folders(run_id: str) -> re.Pattern[str]:
    """The journal folders of a run and of its task's sub-runs (``<run id>:turn<n>``)."""
    return re.compile(f"{_PREFIX}/{re.escape(run_id)}(:turn[0-9]+)?/")


def args_sha256(args: Any) -> str:
    """The SHA-256 of a call's arguments as canonical JSON (sorted keys, compact)."""
    data = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(data.encode()).hexdigest()


@dataclass(frozen=True)
class JournalEntry:
    """One completed call: ``result`` when it succeeded, ``error`` (a message) when it failed."""

    seq: int
    tool: str
    args_sha256: str
    result: Any = None
    error: str | None = None
    recorded_at: str = ""
    record: dict[str, Any] | None = None
    """The call's step record as first reported (a :class:`~shared.models.StepRecord` dump), for a replay."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def matches(self, tool: str, args_hash: str) -> bool:
        """Whether the code now makes the same call at this sequence (else it must not be replayed)."""
        return (self.tool, self.args_sha256) == (tool, args_hash)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JournalEntry:
        error = data.get("error")
        return cls(seq=int(data["seq"]), tool=str(data["tool"]), args_sha256=str(data["args_sha256"]),
                   result=data.get("result"), error=None if error is None else str(error),
                   recorded_at=str(data.get("recorded_at") or ""),
                   record=record if isinstance(record := data.get("record"), dict) else None)


class _Backend(Protocol):
    def create(self, name: str, data: bytes) -> bool:
        """Write ``name`` unless it exists; whether this call created it."""
        ...

    def read(self, name: str, timeout_s: float | None = None) -> bytes | None:
        """The content of ``name`` (``None``: absent); ``timeout_s`` bounds a remote read (connect, read; no retry)."""
        ...

    def names(self, prefix: str) -> list[str]: ...

    def delete_runs(self, run_id: str) -> int:
        """Delete the journals of ``run_id`` and its sub-runs (:data:`_RUN_FOLDERS`); the count of records."""
        ...


class _Folder:
    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self, name: str, data: bytes) -> bool:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        tmp.write_bytes(data)
        try:
            os.link(tmp, path)  # atomic create-if-absent with the whole content in place
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def read(self, name: str, timeout_s: float | None = None) -> bytes | None:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None

    def names(self, prefix: str) -> list[str]:
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        return [f"{prefix}/{p.name}" for p in folder.iterdir() if not p.name.startswith(".")]

    def delete_runs(self, run_id: str) -> int:
        top = self.root / _PREFIX
        if not top.is_dir():
            return 0
        count = 0
        for folder in top.iterdir():
            if folder.is_dir() and _run_folders(run_id).fullmatch(f"{_PREFIX}/{folder.name}/"):
                count += sum(1 for p in folder.rglob("*") if p.is_file())
                shutil.rmtree(folder, ignore_errors=True)
        return count


class _Container:
    def __init__(self, container: Any) -> None:
        self.container = container
        self._created = False

    def _ensure(self) -> None:
        if not self._created:
            from azure.core.exceptions import ResourceExistsError

            with contextlib.suppress(ResourceExistsError):
                self.container.create_container()
            self._created = True

    def create(self, name: str, data: bytes) -> bool:
        from azure.core.exceptions import ResourceExistsError

        self._ensure()
        try:
            self.container.upload_blob(name, data, overwrite=False)  # If-None-Match: * on the service
        except ResourceExistsError:
            return False
        return True

    def read(self, name: str, timeout_s: float | None = None) -> bytes | None:
        from azure.core.exceptions import ResourceNotFoundError

        bounded = {} if timeout_s is None else {
            "connection_timeout": timeout_s, "read_timeout": timeout_s, "retry_total": 0}
        try:
            return bytes(self.container.download_blob(name, **bounded).readall())
        except ResourceNotFoundError:
            return None

    def names(self, prefix: str) -> list[str]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return [blob.name for blob in self.container.list_blobs(name_starts_with=f"{prefix}/")]
        except ResourceNotFoundError:
            return []

    def delete_runs(self, run_id: str) -> int:
        from azure.core.exceptions import ResourceNotFoundError

        folders = _run_folders(run_id)
        try:
            names = [b.name for b in self.container.list_blobs(name_starts_with=f"{_PREFIX}/{run_id}")]
        except ResourceNotFoundError:
            return 0
        count = 0
        for name in names:
            if folders.match(name):  # not another run whose id merely starts with this one
                with contextlib.suppress(ResourceNotFoundError):
                    self.container.delete_blob(name)
                    count += 1
        return count


class CallJournal:
    """Completed tool calls and execution markers per run, in the payload store's storage (see the module doc)."""

    def __init__(self, store: PayloadStore) -> None:
        if isinstance(store, LocalPayloadStore):
            self._backend: _Backend = _Folder(store.root)
        elif isinstance(store, BlobPayloadStore):
            self._backend = _Container(store.container)
        else:
            raise TypeError(f"a call journal needs a local or Blob payload store, not {type(store).__name__}")

    @staticmethod
    def _run(run_id: str) -> str:
        if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
            raise InvalidRequest(f"run id {run_id!r} cannot name a journal", field="run_id")
        return f"{_PREFIX}/{run_id}"

    def record(self, run_id: str, seq: int, tool: str, args_hash: str, result: Any = None, *,
               error: str | None = None, record: Mapping[str, Any] | None = None) -> JournalEntry:
        """Journal call ``seq`` of ``run_id`` as completed (``record``: its step record, kept for a replay); the
        first record of a sequence wins and is returned."""
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise InvalidRequest(f"call sequence must be a positive integer, got {seq!r}", field="seq")
        entry = JournalEntry(seq, tool, args_hash, None if error is not None else result, error,
                             datetime.now(UTC).isoformat(), None if record is None else dict(record))
        name = f"{self._run(run_id)}/calls/{seq:08d}.json"
        data = json.dumps(asdict(entry), separators=(",", ":"), ensure_ascii=False, default=str).encode()
        if self._backend.create(name, data):
            return entry
        existing = self._backend.read(name)
        return entry if existing is None else JournalEntry.from_dict(json.loads(existing))

    def completed(self, run_id: str) -> dict[int, JournalEntry]:
        """Every journalled call of ``run_id`` by sequence (empty for a run that completed none)."""
        entries: dict[int, JournalEntry] = {}
        for name in self._backend.names(f"{self._run(run_id)}/calls"):
            if not name.endswith(".json"):
                continue
            data = self._backend.read(name)
            if data is not None:
                entry = JournalEntry.from_dict(json.loads(data))
                entries[entry.seq] = entry
        return dict(sorted(entries.items()))

    def begin(self, run_id: str, call_key: str) -> bool:
        """Mark ``call_key`` (e.g. ``"<step id>:<args sha256>"``) of ``run_id`` as about to execute; return whether it
        had been begun before, in which case the tool may already have run (a crash or a redelivery)."""
        digest = hashlib.sha256(call_key.encode()).hexdigest()
        stamp = json.dumps({"call_key_sha256": digest, "begun_at": datetime.now(UTC).isoformat()}).encode()
        return not self._backend.create(f"{self._run(run_id)}/begun/{digest}", stamp)

    def _begun(self, run_id: str, call_key: str) -> bool:
        """Whether :meth:`begin` marked ``call_key`` before (read only)."""
        digest = hashlib.sha256(call_key.encode()).hexdigest()
        return self._backend.read(f"{self._run(run_id)}/begun/{digest}") is not None

    def delete_run(self, run_id: str) -> int:
        """Delete the journal of ``run_id`` and of its task's sub-runs (``<run id>:turn<n>``), as retention purges
        the run; the count of records deleted."""
        self._run(run_id)
        return self._backend.delete_runs(run_id)

    def cancel(self, run_id: str) -> bool:
        """Mark ``run_id`` (its root run, for a task's sub-run) canceled, before its orchestration is terminated, so
        no side-effecting call of it starts from then on; whether this call wrote the mark (the first one wins)."""
        stamp = json.dumps({"canceled_at": datetime.now(UTC).isoformat()}).encode()
        return self._backend.create(f"{self._run(root_run_id(run_id))}/canceled", stamp)

    def canceled(self, run_id: str, *, timeout_s: float | None = None) -> bool:
        """Whether ``run_id`` (or the run whose task's sub-run it is) has been canceled; ``timeout_s`` bounds a Blob
        read client-side (connection and read, tried once), which then raises."""
        return self._backend.read(f"{self._run(root_run_id(run_id))}/canceled", timeout_s) is not None

    def refuse_if_canceled(self, run_id: str, *, timeout_s: float | None = None) -> None:
        """Raise :class:`RunCanceled` if ``run_id`` has been canceled: the executor's last-moment gate of a
        side-effecting call (``ToolExecutor.execute(gate=...)``), after any wait for a slot or a worker thread.
        ``timeout_s`` (``ToolSettings.cancel_check_timeout_s``) bounds the read, so one abandoned at the call's
        timeout does not hold its thread for the storage SDK's minutes of retries."""
        if self.canceled(run_id, timeout_s=timeout_s):
            raise RunCanceled("the call was not run: its run was canceled")

    def dispatch(self, run_id: str, call_key: str) -> Dispatch:
        """Start a delivery of the ``call_tool`` call ``call_key`` of ``run_id`` (see the module doc): its attempt
        number, whether that attempt had begun before (a redelivery after a crash), or the final outcome an earlier
        delivery settled with (return it; the tool must not run again), or that the run was canceled (the tool must
        not run at all: settle the call as final)."""
        settled = self._settled(run_id, call_key)
        if settled and settled[-1].get("final"):
            outcome = settled[-1].get("outcome")
            return Dispatch(len(settled), redelivered=True, settled=outcome if isinstance(outcome, dict) else None)
        attempt = len(settled) + 1
        if self.canceled(run_id):  # no marker written: a later delivery must not take this call for one that began
            return Dispatch(attempt, redelivered=self._begun(run_id, f"{call_key}#{attempt}"), canceled=True)
        return Dispatch(attempt, redelivered=self.begin(run_id, f"{call_key}#{attempt}"))

    def settle(self, run_id: str, call_key: str, attempt: int, outcome: Mapping[str, Any], *, final: bool) -> None:
        """Record how ``attempt`` of ``call_key`` ended, before it is reported: ``final`` when Durable will not
        retry it (a result, a non-retryable failure), not for a retryable failure or a circuit wait."""
        digest = hashlib.sha256(call_key.encode()).hexdigest()
        data = json.dumps({"attempt": attempt, "final": final, "outcome": dict(outcome)}, separators=(",", ":"),
                          ensure_ascii=False, default=str).encode()
        self._backend.create(f"{self._run(run_id)}/settled/{digest}/{attempt:06d}.json", data)

    def _settled(self, run_id: str, call_key: str) -> list[dict[str, Any]]:
        digest = hashlib.sha256(call_key.encode()).hexdigest()
        found = []
        for name in sorted(self._backend.names(f"{self._run(run_id)}/settled/{digest}")):
            data = self._backend.read(name) if name.endswith(".json") else None
            if data is not None:
                found.append(json.loads(data))
        found.sort(key=lambda item: int(item.get("attempt") or 0))
        return found


@dataclass(frozen=True)
class Dispatch:
    """What one delivery of a ``call_tool`` call may do (:meth:`CallJournal.dispatch`)."""

    attempt: int
    """The attempt this delivery belongs to (1 for the first; a Durable retry after a reported failure adds one)."""
    redelivered: bool
    """This attempt had begun before and never settled: the tool may already have executed."""
    settled: dict[str, Any] | None = None
    """The final outcome (a ``call_tool`` output) an earlier delivery settled with: report it, run nothing."""
    canceled: bool = False
    """The run was canceled (:meth:`CallJournal.cancel`) before this delivery: run nothing, settle it as final."""


_journals: weakref.WeakKeyDictionary[Any, CallJournal] = weakref.WeakKeyDictionary()
_journals_lock = threading.Lock()


def journal_for(store: PayloadStore) -> CallJournal:
    """The :class:`CallJournal` kept in ``store``'s storage, one per store (so a Blob container is created once)."""
    with _journals_lock:
        journal = _journals.get(store)
        if journal is None:
            journal = _journals[store] = CallJournal(store)
        return journal
