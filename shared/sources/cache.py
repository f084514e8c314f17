"""The discovery cache: what a source offered last time, so start-up does not wait on every server every time.

A source's discovery (its tool specs plus how to call each, see :class:`DiscoveredTool`) is stored as JSON under the
source id (sha256 of the source's configuration), on local disk (:class:`FileCacheStore`) or in Blob Storage
(:class:`BlobCacheStore`). Never pickle: the cache may be shared, and loading it must not run code.

:meth:`DiscoveryCache.get_or_discover` returns a fresh entry as it is; a missing or stale one is rediscovered and
stored; when rediscovery fails and a stale entry exists, the stale entry is used (and a warning logged), so a server
that is down at start-up does not take its tools out of the catalog.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from shared.models import ToolSpec, canonical_json

__all__ = [
    "BlobCacheStore",
    "CacheStore",
    "CachedDiscovery",
    "DiscoveredTool",
    "Discovery",
    "DiscoveryCache",
    "FileCacheStore",
    "Origin",
]

log = logging.getLogger(__name__)

Origin = Literal["fresh", "cache", "stale"]
"""Where a discovery came from: just discovered, a fresh cache entry, or a stale one used because discovery failed."""
_FORMAT = 1
_KEY = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class DiscoveredTool:
    """One tool a source offers: its spec and the source-specific JSON that says how to call it."""

    spec: ToolSpec
    """The spec as it goes into the catalog (name already prefixed with the source's alias)."""
    binding: Mapping[str, Any] = field(default_factory=dict)
    """How to call it: for OpenAPI the method, path and parameter locations; for MCP the server's tool name."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (``{"spec", "binding"}``)."""
        return {"spec": self.spec.model_dump(mode="json"), "binding": dict(self.binding)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DiscoveredTool:
        """Inverse of :meth:`to_json`; raises ``ValueError`` on malformed data."""
        return cls(ToolSpec.model_validate(data["spec"]), dict(data.get("binding") or {}))


def discovery_version(tools: Sequence[DiscoveredTool]) -> str:
    """sha256 of the canonical JSON of the discovered tools: equal offers, equal versions."""
    return hashlib.sha256(canonical_json([tool.to_json() for tool in tools]).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Discovery:
    """The tools of one source at one time."""

    source_id: str
    """sha256 of the source's configuration."""
    tools: tuple[DiscoveredTool, ...]
    """What the source offered."""
    discovered_at: float
    """When (seconds since the epoch, from the cache's clock)."""
    version: str = ""
    """Content hash of ``tools`` (filled in when empty)."""

    def __post_init__(self) -> None:
        if not self.version:
            object.__setattr__(self, "version", discovery_version(self.tools))

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "format": _FORMAT,
            "source_id": self.source_id,
            "discovered_at": self.discovered_at,
            "version": self.version,
            "tools": [tool.to_json() for tool in self.tools],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Discovery:
        """Inverse of :meth:`to_json`; raises ``ValueError`` on malformed or foreign-format data."""
        if data.get("format") != _FORMAT:
            raise ValueError(f"unknown discovery cache format {data.get('format')!r}")
        tools = tuple(DiscoveredTool.from_json(item) for item in data["tools"])
        discovery = cls(str(data["source_id"]), tools, float(data["discovered_at"]))
        if discovery.version != data.get("version"):
            raise ValueError("discovery cache entry does not match its version hash")
        return discovery


class CacheStore(Protocol):
    """Where cache entries live: bytes by key (a source id)."""

    def read(self, key: str) -> bytes | None:
        """The stored bytes, or ``None`` when there are none."""
        ...

    def write(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there."""
        ...


class FileCacheStore:
    """A folder of ``<key>.json`` files, written atomically (temporary file, then rename)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError(f"cache keys are sha256 hex digests, got {key!r}")
        return self.folder / f"{key}.json"

    def read(self, key: str) -> bytes | None:
        """The file's bytes, or ``None`` if it does not exist."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        """Write the file atomically."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:12]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class BlobCacheStore:
    """Blobs ``<prefix><key>.json`` in an ``azure.storage.blob.ContainerClient`` (created on first write if missing)."""

    def __init__(self, container: Any, *, prefix: str = "discovery/") -> None:
        self.container = container
        self.prefix = prefix

    def _name(self, key: str) -> str:
        if not _KEY.fullmatch(key):
            raise ValueError(f"cache keys are sha256 hex digests, got {key!r}")
        return f"{self.prefix}{key}.json"

    def read(self, key: str) -> bytes | None:
        """The blob's bytes, or ``None`` if the blob (or the container) does not exist."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return bytes(self.container.download_blob(self._name(key)).readall())
        except ResourceNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        """Upload the blob, creating the container the first time it is missing."""
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
        from azure.storage.blob import ContentSettings

        settings = ContentSettings(content_type="application/json")
        try:
            self.container.upload_blob(self._name(key), data, overwrite=True, content_settings=settings)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):  # another writer created it meanwhile
                self.container.create_container()
            self.container.upload_blob(self._name(key), data, overwrite=True, content_settings=settings)


@dataclass(frozen=True)
class CachedDiscovery:
    """A discovery and where it came from."""

    discovery: Discovery
    origin: Origin
    error: str | None = None
    """Why rediscovery failed, when ``origin`` is ``"stale"``."""


class DiscoveryCache:
    """Discoveries by source id with a time to live. Thread-safe as far as its store is.

    ``clock`` (seconds since the epoch; wall-clock because entries outlive processes) is injectable for tests.
    """

    def __init__(self, store: CacheStore, *, ttl_s: float = 3600.0, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.clock = clock

    def get(self, source_id: str) -> Discovery | None:
        """The stored discovery, fresh or not; ``None`` when missing or unreadable (unreadable ones are logged)."""
        raw = self.store.read(source_id)
        if raw is None:
            return None
        try:
            discovery = Discovery.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            log.warning("discovery cache entry %s is unreadable, ignoring it: %s", source_id[:12], exc)
            return None
        if discovery.source_id != source_id:
            log.warning("discovery cache entry %s belongs to another source, ignoring it", source_id[:12])
            return None
        return discovery

    def is_fresh(self, discovery: Discovery) -> bool:
        """Whether ``discovery`` is younger than the TTL."""
        age = self.clock() - discovery.discovered_at
        return 0 <= age < self.ttl_s

    def put(self, source_id: str, tools: Sequence[DiscoveredTool]) -> Discovery:
        """Store what ``source_id`` offers now and return it as a :class:`Discovery`."""
        discovery = Discovery(source_id, tuple(tools), self.clock())
        self.store.write(source_id, canonical_json(discovery.to_json()).encode("utf-8"))
        return discovery

    async def get_or_discover(
        self, source_id: str, discover: Callable[[], Awaitable[Sequence[DiscoveredTool]]], *, refresh: bool = False
    ) -> CachedDiscovery:
        """A fresh cached discovery, else ``await discover()`` (stored), else, if that fails, the stale entry.

        ``refresh`` skips the fresh-entry shortcut. When discovery fails and nothing is cached, its error propagates.
        Store failures are logged and do not fail the discovery.
        """
        cached = await asyncio.to_thread(self._get_quietly, source_id)
        if cached is not None and not refresh and self.is_fresh(cached):
            return CachedDiscovery(cached, "cache")
        try:
            tools = list(await discover())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if cached is None:
                raise
            age = self.clock() - cached.discovered_at
            log.warning(
                "discovering source %s failed (%s); using the cached discovery from %.0f s ago",
                source_id[:12], _describe(exc), age,
            )
            return CachedDiscovery(cached, "stale", error=_describe(exc))
        try:
            discovery = await asyncio.to_thread(self.put, source_id, tools)
        except Exception:
            log.warning("storing the discovery of source %s failed; continuing without it", source_id[:12],
                        exc_info=True)
            discovery = Discovery(source_id, tuple(tools), self.clock())
        return CachedDiscovery(discovery, "fresh")

    def _get_quietly(self, source_id: str) -> Discovery | None:
        try:
            return self.get(source_id)
        except Exception:
            log.warning("reading the discovery cache for source %s failed; rediscovering", source_id[:12],
                        exc_info=True)
            return None


def _describe(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {message}"
