"""A content-addressed cache of embeddings, keyed by (encoder cache key, sha256 of the rendered tool text).

Layout in a store (a local folder or a Blob container), under one prefix per encoder::

    <encoder-slug>/<shard>.npy    float32 matrix, one row per text (``numpy.save``, never pickled)
    <encoder-slug>/<shard>.json   {"encoder": ..., "dim": 384, "keys": [sha256, ...]}  (the shard's index)

Shards are append-only and named by a hash of their keys, so writers never overwrite each other's files and
writing the same shard twice is harmless. The ``.npy`` is written before its ``.json``; a reader lists the
``.json`` files only, so it never sees a shard without its data. When there are more than ``max_shards`` shards
:meth:`EmbeddingCache.compact` merges them into one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["BlobContainerStore", "CacheStore", "EmbeddingCache", "LocalFolderStore", "text_key"]

logger = logging.getLogger(__name__)


def text_key(text: str) -> str:
    """The sha256 hex digest of a rendered tool text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CacheStore(Protocol):
    """Where cache files live: four byte-level operations on names like ``prefix/file.npy``."""

    def list(self, prefix: str) -> list[str]:
        """Names that start with ``prefix``."""
        ...

    def read(self, name: str) -> bytes:
        """The bytes stored under ``name`` (``KeyError`` if there is none)."""
        ...

    def write(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name``, replacing what was there."""
        ...

    def delete(self, name: str) -> None:
        """Remove ``name``; no error if it is already gone."""
        ...


class LocalFolderStore:
    """A :class:`CacheStore` on a local directory (created on first write). Writes are atomic renames."""

    def __init__(self, root: Path | str) -> None:
        self._root = Path(root)

    @property
    def root(self) -> Path:
        """The folder."""
        return self._root

    def list(self, prefix: str) -> list[str]:
        """Names (relative to the root, with ``/``) that start with ``prefix``."""
        if not self._root.is_dir():
            return []
        names = (p.relative_to(self._root).as_posix() for p in self._root.rglob("*") if p.is_file())
        return sorted(n for n in names if n.startswith(prefix) and not n.endswith(".tmp"))

    def read(self, name: str) -> bytes:
        """File contents; ``KeyError`` when the file does not exist."""
        try:
            return (self._root / name).read_bytes()
        except FileNotFoundError as exc:
            raise KeyError(name) from exc

    def write(self, name: str, data: bytes) -> None:
        """Write to a temporary file, then rename over ``name``."""
        path = self._root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def delete(self, name: str) -> None:
        """Remove the file if present."""
        (self._root / name).unlink(missing_ok=True)


class BlobContainerStore:
    """A :class:`CacheStore` on an Azure Blob Storage container.

    Pass an ``azure.storage.blob.ContainerClient`` built by the caller (connection string, or a managed identity
    credential); this class never builds clients or reads credentials. The container must exist.
    """

    def __init__(self, container: Any) -> None:
        self._container = container

    def list(self, prefix: str) -> list[str]:
        """Blob names that start with ``prefix``."""
        return sorted(self._container.list_blob_names(name_starts_with=prefix))

    def read(self, name: str) -> bytes:
        """Blob contents; ``KeyError`` when the blob does not exist."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return bytes(self._container.download_blob(name).readall())
        except ResourceNotFoundError as exc:
            raise KeyError(name) from exc

    def write(self, name: str, data: bytes) -> None:
        """Upload, replacing an existing blob."""
        self._container.upload_blob(name, data, overwrite=True)

    def delete(self, name: str) -> None:
        """Delete the blob if present."""
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):  # already gone is the goal state
            self._container.delete_blob(name)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


class EmbeddingCache:
    """Embeddings by text key for one encoder, in memory and optionally in a :class:`CacheStore`.

    ``store=None`` keeps everything in memory (tests, one-off catalogs). Thread-safe.
    """

    def __init__(self, encoder_key: str, store: CacheStore | None = None, *, max_shards: int = 16) -> None:
        self._encoder_key = encoder_key
        self._prefix = f"{_slug(encoder_key)}/"
        self._store = store
        self._max_shards = max_shards
        self._lock = threading.Lock()
        self._rows: dict[str, tuple[str, int]] = {}
        self._shard_keys: dict[str, list[str]] = {}
        self._matrices: dict[str, np.ndarray] = {}
        self._listed = store is None

    @property
    def store(self) -> CacheStore | None:
        """Where the cache persists (``None``: memory only)."""
        return self._store

    @property
    def encoder_key(self) -> str:
        """The encoder this cache belongs to."""
        return self._encoder_key

    def __len__(self) -> int:
        with self._lock:
            self._list_shards()
            return len(self._rows)

    def _list_shards(self) -> None:
        if self._listed or self._store is None:
            return
        for name in self._store.list(self._prefix):
            if not name.endswith(".json"):
                continue
            shard = name[: -len(".json")]
            try:
                meta = json.loads(self._store.read(name))
            except (KeyError, ValueError):
                logger.warning("skipping unreadable embedding-cache index %s", name)
                continue
            if meta.get("encoder") != self._encoder_key:
                continue
            self._add_shard(shard, list(meta["keys"]))
        self._listed = True
        logger.info("embedding cache %s: %d vectors in %d shards", self._prefix, len(self._rows), len(self._shard_keys))

    def _add_shard(self, shard: str, keys: list[str]) -> None:
        self._shard_keys[shard] = keys
        for row, key in enumerate(keys):
            self._rows[key] = (shard, row)

    def _matrix(self, shard: str) -> np.ndarray:
        matrix = self._matrices.get(shard)
        if matrix is None:
            assert self._store is not None  # in-memory shards are always in _matrices
            matrix = np.load(io.BytesIO(self._store.read(f"{shard}.npy")), allow_pickle=False)
            matrix = np.asarray(matrix, dtype=np.float32)
            self._matrices[shard] = matrix
        return matrix

    def fetch(self, keys: Sequence[str], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Cached vectors for ``keys``: an ``(n, dim)`` array (zeros where missing) and a boolean "found" mask."""
        out = np.zeros((len(keys), dim), dtype=np.float32)
        found = np.zeros(len(keys), dtype=bool)
        with self._lock:
            self._list_shards()
            by_shard: dict[str, tuple[list[int], list[int]]] = {}
            for i, key in enumerate(keys):
                where = self._rows.get(key)
                if where is not None:
                    targets, rows = by_shard.setdefault(where[0], ([], []))
                    targets.append(i)
                    rows.append(where[1])
            for shard, (targets, rows) in by_shard.items():
                try:
                    matrix = self._matrix(shard)
                except KeyError:
                    logger.warning("embedding-cache shard %s vanished; its vectors will be recomputed", shard)
                    continue
                if matrix.shape[1] != dim:
                    continue
                out[targets] = matrix[rows]
                found[targets] = True
        return out, found

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Add vectors (one row per key) as a new shard, then compact if there are too many shards."""
        if not keys:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        shard = self._prefix + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:24]
        with self._lock:
            self._list_shards()
            self._write_shard(shard, list(keys), vectors)
            too_many = len(self._shard_keys) > self._max_shards
        if too_many:
            self.compact()

    def _write_shard(self, shard: str, keys: list[str], vectors: np.ndarray) -> None:
        if self._store is not None:
            buffer = io.BytesIO()
            np.save(buffer, vectors, allow_pickle=False)
            self._store.write(f"{shard}.npy", buffer.getvalue())
            meta = {"encoder": self._encoder_key, "dim": int(vectors.shape[1]), "keys": keys}
            self._store.write(f"{shard}.json", json.dumps(meta).encode())
        self._matrices[shard] = vectors
        self._add_shard(shard, keys)

    def compact(self) -> None:
        """Merge all shards into one (keeping each key once) and delete the old shards."""
        with self._lock:
            self._list_shards()
            old = list(self._shard_keys)
            if len(old) <= 1:
                return
            keys = list(self._rows)
            dim = next(iter(self._iter_dims(old)), 0)
            merged = np.zeros((len(keys), dim), dtype=np.float32)
            for i, key in enumerate(keys):
                shard, row = self._rows[key]
                merged[i] = self._matrix(shard)[row]
            self._rows.clear()
            self._shard_keys.clear()
            shard = self._prefix + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:24]
            self._write_shard(shard, keys, merged)
            for name in old:
                if name == shard:
                    continue
                self._matrices.pop(name, None)
                if self._store is not None:
                    self._store.delete(f"{name}.json")
                    self._store.delete(f"{name}.npy")
            logger.info("compacted %d embedding-cache shards into %s", len(old), shard)

    def _iter_dims(self, shards: list[str]) -> Iterator[int]:
        for shard in shards:
            yield int(self._matrix(shard).shape[1])
