"""The source registry: tool sources registered through the API, kept in shared storage so that every instance of the
app loads them (at start-up and when :mod:`shared.sources.registry_sync` sees the registry change).

The registry is one JSON document (never pickle: loading it must not run code)::

    {"format": 1, "sources": [{"id": "<source id>", "config": {...}, "registered_at": 1732370000.0}, ...]}

``config`` is the validated source entry (:data:`~shared.sources.config.SourceConfig` as JSON). It holds no secret
values: credentials are named secrets (``auth.secret``, ``secret_env``) read from the secret source when a tool is
called. ``id`` is :func:`~shared.sources.config.source_id` of the config, so registering the same source twice finds
the entry that is there and changes nothing.

Where the document lives (:class:`RegistryStore`, three methods):

- :class:`BlobRegistryStore` — one blob in a Blob Storage container (Azure; Azurite locally);
- :class:`FileRegistryStore` — one local file (the devhost, a single instance).

Writes are optimistic: a write names the version it read (the blob's ETag with ``If-Match``; locally a content hash
compared under an exclusive lock file, then an atomic rename) and fails with :class:`RegistryConflict` when another
writer got there first. :meth:`SourceRegistry.add` then re-reads and re-applies its change, so two concurrent
registrations never lose one another.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from shared.errors import InvalidRequest, NotConfigured, UpstreamUnavailable
from shared.models import canonical_json
from shared.sources.config import SourceConfig, parse_source, source_id

__all__ = [
    "BlobRegistryStore",
    "FileRegistryStore",
    "RegisteredSource",
    "RegistryConflict",
    "RegistrySnapshot",
    "RegistryStore",
    "SourceRegistry",
]

log = logging.getLogger(__name__)

_FORMAT = 1


class RegistryConflict(Exception):
    """A conditional write found another version than the one it named (another writer came first)."""


class RegistryStore(Protocol):
    """Where the registry document lives: bytes with a version tag, replaced only if unchanged since read."""

    def version(self) -> str | None:
        """The current version tag (an ETag), without the document; ``None`` when there is no document yet."""
        ...

    def read(self) -> tuple[bytes | None, str | None]:
        """``(document, version)``; ``(None, None)`` when there is no document yet."""
        ...

    def write(self, data: bytes, *, if_match: str | None) -> str:
        """Replace the document if its version is still ``if_match`` (``None``: only if there is no document) and
        return the new version; :class:`RegistryConflict` otherwise."""
        ...


# --------------------------------------------------------------------------------------------------- stores


class FileRegistryStore:
    """One local JSON file. The version is the sha256 of its bytes; a write compares it and renames a temporary
    file over the document while holding an exclusive ``flock`` on ``<file>.lock``, so processes on one machine
    (several devhosts) write one at a time. Readers never lock: the rename is atomic."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"FileRegistryStore({str(self.path)!r})"

    def _current(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def version(self) -> str | None:
        """See :meth:`RegistryStore.version`."""
        return _digest(self._current())

    def read(self) -> tuple[bytes | None, str | None]:
        """See :meth:`RegistryStore.read`."""
        data = self._current()
        return data, _digest(data)

    def write(self, data: bytes, *, if_match: str | None) -> str:
        """See :meth:`RegistryStore.write`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _digest(self._current()) != if_match:
                raise RegistryConflict(f"{self.path} changed since it was read")
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return _digest(data) or ""


def _digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


class BlobRegistryStore:
    """One blob (``name``) in an ``azure.storage.blob.ContainerClient`` built by the caller; the version is the
    blob's ETag and writes are conditional (``If-Match``, or ``If-None-Match: *`` for the first one). The container
    is created on the first write if it is missing."""

    def __init__(self, container: Any, name: str = "registry.json") -> None:
        self.container = container
        self.name = name

    def __repr__(self) -> str:
        return f"BlobRegistryStore({self.container.container_name!r}, {self.name!r})"

    @property
    def _blob(self) -> Any:
        return self.container.get_blob_client(self.name)

    def version(self) -> str | None:
        """See :meth:`RegistryStore.version` (one ``HEAD`` request)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return str(self._blob.get_blob_properties().etag)
        except ResourceNotFoundError:
            return None

    def read(self) -> tuple[bytes | None, str | None]:
        """See :meth:`RegistryStore.read`."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            downloader = self._blob.download_blob()
        except ResourceNotFoundError:
            return None, None
        return bytes(downloader.readall()), str(downloader.properties.etag)

    def write(self, data: bytes, *, if_match: str | None) -> str:
        """See :meth:`RegistryStore.write`."""
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        try:
            return self._upload(data, if_match)
        except ResourceNotFoundError as exc:
            if if_match is not None:  # the blob was deleted since it was read
                raise RegistryConflict(f"{self!r} was deleted since it was read") from exc
        with contextlib.suppress(ResourceExistsError):  # the container was missing; another writer may create it too
            self.container.create_container()
        return self._upload(data, if_match)

    def _upload(self, data: bytes, if_match: str | None) -> str:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
        from azure.storage.blob import ContentSettings

        content = ContentSettings(content_type="application/json")
        try:
            if if_match is None:
                result = self._blob.upload_blob(data, overwrite=False, content_settings=content)
            else:
                result = self._blob.upload_blob(data, overwrite=True, etag=if_match,
                                                match_condition=MatchConditions.IfNotModified,
                                                content_settings=content)
        except (ResourceExistsError, ResourceModifiedError) as exc:
            raise RegistryConflict(f"{self!r} changed since it was read") from exc
        return str(result["etag"])


# ------------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class RegisteredSource:
    """One entry of the registry."""

    id: str
    """:func:`~shared.sources.config.source_id` of ``config``."""
    config: SourceConfig
    """The validated source entry."""
    registered_at: float
    """When it was registered (seconds since the epoch)."""


@dataclass(frozen=True)
class RegistrySnapshot:
    """The registry as read at one version."""

    sources: tuple[RegisteredSource, ...]
    """The entries that parse, in registration order."""
    version: str | None
    """The version read (``None``: no document yet)."""
    problems: tuple[str, ...] = ()
    """Entries that did not parse, or why the whole document was unreadable."""


class SourceRegistry:
    """The registered sources in a :class:`RegistryStore`. Thread-safe as far as the store is; blocking (storage
    I/O), so async callers run it in a thread."""

    def __init__(
        self,
        store: RegistryStore,
        *,
        max_attempts: int = 20,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.max_attempts = max_attempts
        self.clock = clock
        self.sleep = sleep

    def version(self) -> str | None:
        """The stored version tag (cheap: no document); ``None`` when nothing was ever registered."""
        return self.store.version()

    def read(self) -> RegistrySnapshot:
        """The registered sources. Entries that do not validate (written by another version of the app, or edited
        by hand) are left out and named in ``problems``; so is an unreadable document as a whole."""
        data, version = self.store.read()
        try:
            entries = _entries(data)
        except ValueError as exc:
            return RegistrySnapshot((), version, (str(exc),))
        sources: list[RegisteredSource] = []
        problems: list[str] = []
        for index, entry in enumerate(entries):
            try:
                config = parse_source(entry.get("config"), field=f"sources[{index}].config")
                sources.append(RegisteredSource(source_id(config), config, float(entry.get("registered_at") or 0)))
            except (InvalidRequest, TypeError, ValueError, AttributeError) as exc:
                problems.append(getattr(exc, "message", None) or f"sources[{index}]: {exc}")
        return RegistrySnapshot(tuple(sources), version, tuple(problems))

    def add(self, config: SourceConfig) -> bool:
        """Add ``config`` unless a source with its id is registered already; ``True`` when it was added.

        Read, add, write if unchanged; on a conflict re-read and try again (with jittered back-off), so a
        concurrent registration on another instance is kept. :class:`NotConfigured` when the stored document is not
        a registry this app can extend (it is never overwritten); :class:`UpstreamUnavailable` when the storage
        fails or the conflicts do not stop.
        """
        sid = source_id(config)
        entry = {"id": sid, "config": config.model_dump(mode="json"), "registered_at": self.clock()}
        added = self._change(lambda entries: None if any(e.get("id") == sid for e in entries) else [*entries, entry])
        if added:
            log.info("source %s registered in %r", sid[:12], self.store)
        return added

    def remove(self, sid: str) -> bool:
        """Remove the source with id ``sid``; ``True`` when it was registered. Same concurrency as :meth:`add`."""
        removed = self._change(lambda entries: [e for e in entries if e.get("id") != sid]
                               if any(e.get("id") == sid for e in entries) else None)
        if removed:
            log.info("source %s removed from %r", sid[:12], self.store)
        return removed

    def _change(self, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]] | None]) -> bool:
        """Read, ``edit`` the entries (None: nothing to change), write if unchanged; retry on conflicts."""
        for attempt in range(self.max_attempts):
            try:
                data, version = self.store.read()
            except Exception as exc:
                raise UpstreamUnavailable(f"the source registry ({self.store!r}) cannot be read: {exc}") from exc
            try:
                entries = _entries(data)
            except ValueError as exc:
                raise NotConfigured(f"the source registry ({self.store!r}) is not usable: {exc}") from None
            changed = edit(entries)
            if changed is None:
                return False
            document = canonical_json({"format": _FORMAT, "sources": changed}).encode("utf-8")
            try:
                self.store.write(document, if_match=version)
            except RegistryConflict:
                self.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))  # full jitter
                continue
            except Exception as exc:
                raise UpstreamUnavailable(f"the source registry ({self.store!r}) cannot be written: {exc}") from exc
            return True
        raise UpstreamUnavailable(f"the source registry ({self.store!r}): gave up after {self.max_attempts} "
                                  "write conflicts")


def _entries(data: bytes | None) -> list[dict[str, Any]]:
    """The entries of a stored document (a new list); ``ValueError`` when it is not a registry of this format."""
    if data is None:
        return []
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(document, Mapping) or document.get("format") != _FORMAT:
        found = document.get("format") if isinstance(document, Mapping) else type(document).__name__
        raise ValueError(f"expected registry format {_FORMAT}, found {found!r}")
    entries = document.get("sources")
    if not isinstance(entries, list) or not all(isinstance(entry, Mapping) for entry in entries):
        raise ValueError("sources must be a list of objects")
    return [dict(entry) for entry in entries]
