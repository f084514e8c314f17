"""The search index on local disk, memory-mapped: what a warm start would otherwise re-derive from the catalog.

Rebuilding the index of 100k tools means rendering and tokenising every tool (seconds of Python) and gathering their
vectors from the embedding cache. All of that is a pure function of the catalog, so it is saved once, keyed by the
catalog's content, and loaded with ``numpy.load(mmap_mode="r")`` (milliseconds). Layout, in the folder of a local
embedding cache::

    index-<key>/meta.json        {"format", "key", "count", "dim", "terms": [...], "names": [...]}
    index-<key>/filters.json     {"tags": [[...], ...], "sources": [...]}   (read on the first filtered search)
    index-<key>/<array>.npy      the BM25 arrays, the tool-vector matrix and its int8 pre-filter copy (never pickled)

A bundle is written to a temporary folder and renamed into place, so a reader sees a whole bundle or none; two
processes building the same catalog both write, and the first rename wins. The ``max_kept`` newest bundles are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.cache_folders import prune_by_use
from shared.search.bm25 import Bm25Index
from shared.search.document import ToolDocument
from shared.search.embedding.cache import EmbeddingCache, LocalFolderStore
from shared.search.vectors import QuantizedVectors, VectorIndex

__all__ = ["INDEX_FORMAT", "IndexBundle", "IndexFolder", "catalog_content_key", "index_folder_for", "index_key"]

logger = logging.getLogger(__name__)

INDEX_FORMAT = 3
"""Bump when tokenising, field weights, document rendering or the bundle layout change (old bundles then miss)."""

_MATRIX = "vectors"
_RANKS = "name_ranks"


def index_key(content_key: str, encoder_key: str) -> str:
    """The bundle name for a catalog (``content_key``: a hash of its tools) indexed with one encoder."""
    return hashlib.sha256(f"{INDEX_FORMAT}\n{encoder_key}\n{content_key}".encode()).hexdigest()[:32]


def catalog_content_key(items: Sequence[Mapping[str, Any] | ToolDocument]) -> str:
    """A hash of the tools as given (for naming a saved index when the caller has no catalog version)."""
    digest = hashlib.sha256()
    for item in items:
        fields = item if not isinstance(item, ToolDocument) else {
            "name": item.name, "description": item.description, "parameters": item.parameters,
            "tags": sorted(item.tags), "source": item.source}
        digest.update(json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass(frozen=True)
class IndexBundle:
    """What a search index is made of, in index order."""

    names: list[str]
    name_ranks: np.ndarray
    """Each name's position in sorted order (search's tie-break)."""
    bm25: Bm25Index
    vectors: VectorIndex
    """Tool vectors, row-major ``(len(names), dim)`` float32, with their int8 pre-filter for large catalogs."""
    tags: Sequence[frozenset[str]] | None = None
    """Per tool; ``None`` when loaded from disk (see :meth:`IndexFolder.filter_fields`)."""
    sources: Sequence[str] | None = None


class IndexFolder:
    """Index bundles in a local folder (created on first save)."""

    def __init__(self, root: Path | str, *, max_kept: int = 2) -> None:
        self.root = Path(root)
        self._max_kept = max(1, max_kept)

    def _path(self, key: str) -> Path:
        return self.root / f"index-{key}"

    def load(self, key: str) -> IndexBundle | None:
        """The bundle saved under ``key``, memory-mapped; ``None`` if there is none or it does not fit together."""
        path = self._path(key)
        if not (path / "meta.json").is_file():
            return None
        try:
            meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
            if meta.get("format") != INDEX_FORMAT or meta.get("key") != key:
                return None
            arrays = {p.stem: np.asarray(np.load(p, mmap_mode="r", allow_pickle=False)) for p in path.glob("*.npy")}
            names, count = meta["names"], int(meta["count"])
            matrix, ranks = arrays.pop(_MATRIX), arrays.pop(_RANKS)
            quantized_arrays = {n: arrays.pop(n) for n in list(arrays) if n.startswith("q_")}
            quantized = QuantizedVectors.from_arrays(quantized_arrays) if quantized_arrays else None
            vectors = VectorIndex(matrix, quantized)
            bm25 = Bm25Index.from_arrays(arrays, meta["terms"])
            if (len(names) != count or bm25.size != count or ranks.shape != (count,)
                    or matrix.shape != (count, int(meta["dim"]))):
                raise ValueError("the bundle's parts disagree on the tool count")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("search index bundle %s unusable (%s); rebuilding", key, type(exc).__name__)
            shutil.rmtree(path, ignore_errors=True)  # so that the rebuilt index can be saved in its place
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # most recently used: pruning keeps it
        return IndexBundle(names=names, name_ranks=ranks, bm25=bm25, vectors=vectors)

    def filter_fields(self, key: str) -> tuple[list[frozenset[str]], list[str]]:
        """Each tool's tags and source, for filtered searches over a loaded bundle."""
        data = json.loads((self._path(key) / "filters.json").read_text(encoding="utf-8"))
        return [frozenset(t) for t in data["tags"]], list(data["sources"])

    def save(self, key: str, bundle: IndexBundle) -> None:
        """Write ``bundle`` under ``key`` (no error if another process already did), then prune old bundles."""
        if bundle.tags is None or bundle.sources is None:
            raise ValueError("a bundle to save needs each tool's tags and sources")
        final = self._path(key)
        if final.exists():
            return
        tmp = self.root / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir(parents=True)
            arrays, terms = bundle.bm25.arrays()
            extra = {_MATRIX: np.ascontiguousarray(bundle.vectors.vectors), _RANKS: bundle.name_ranks}
            quantized = bundle.vectors.quantized  # built here for large catalogs, so a warm start need not
            if quantized is not None:
                extra.update(quantized.arrays())
            for name, array in {**arrays, **extra}.items():
                np.save(tmp / f"{name}.npy", array, allow_pickle=False)
            filters = {"tags": [sorted(t) for t in bundle.tags], "sources": list(bundle.sources)}
            (tmp / "filters.json").write_text(json.dumps(filters, separators=(",", ":")), encoding="utf-8")
            meta = {"format": INDEX_FORMAT, "key": key, "count": len(bundle.names),
                    "dim": bundle.vectors.dim, "terms": terms, "names": bundle.names}
            (tmp / "meta.json").write_text(json.dumps(meta, separators=(",", ":")), encoding="utf-8")
            tmp.rename(final)
        except OSError as exc:
            if not final.exists():
                logger.warning("could not save the search index bundle %s: %s", key, type(exc).__name__)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._prune(keep=final)

    def _prune(self, keep: Path) -> None:
        prune_by_use(self.root.glob("index-*"), keep, self._max_kept,
                     lambda old: shutil.rmtree(old, ignore_errors=True))


def index_folder_for(cache: EmbeddingCache | None, max_kept: int) -> IndexFolder | None:
    """Where an index over ``cache`` is saved: beside a local embedding cache; nowhere for memory or Blob caches
    (memory-mapping needs a local file)."""
    store = cache.store if cache is not None else None
    return IndexFolder(store.root, max_kept=max_kept) if isinstance(store, LocalFolderStore) else None
