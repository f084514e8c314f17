"""Tool search: BM25, embeddings, and their fusion behind one ``Retriever.search(query, k, filters)`` seam.

Every retriever returns :class:`ToolHit` s ranked by a calibrated score in [0, 1], whatever the catalog size:

* BM25: the fraction of the best score the query could reach (see :meth:`shared.search.bm25.Bm25Index.scores`).
* Embeddings: cosine similarity mapped linearly from ``[cosine_floor, cosine_ceiling]`` to [0, 1]; a cosine at or
  below the floor (what all-MiniLM-L6-v2 gives unrelated texts) is 0.
* Hybrid: the weighted sum of the two (weights add up to 1).

A hybrid index over a local embedding cache is saved beside it (:mod:`shared.search.index_store`), keyed by the
catalog's content, and a later process with the same catalog memory-maps it instead of re-deriving it.

So ``min_score`` is a threshold with a meaning: tools unrelated to the query score 0 or close to it. On the labelled
AWS set (``benchmarks/retrieval_eval.py``), 99.0% of gold tools score >= 0.25 against 4.3% of random other tools
(median 0.77 vs 0.015). The default weights, anchors and multi-part handling are the ones that evaluation chose on
its dev split.

Public entry point (also used by the external benchmark)::

    retriever = HybridRetriever.from_specs(openai_tool_specs)
    hits = retriever.search("book a flight, then convert the price to euros", k=5)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, runtime_checkable

import numpy as np

from shared.search.bm25 import Bm25Index, tokenize
from shared.search.clauses import split_clauses
from shared.search.document import ToolDocument
from shared.search.embedding import Encoder, PackagedMiniLm, bulk_encoder, shared_encoder
from shared.search.embedding.cache import EmbeddingCache, LocalFolderStore, text_key
from shared.search.filters import FilterMasks, SearchFilters
from shared.search.fusion import _top, lead_then_interleave, name_ranks
from shared.search.index_store import IndexBundle, IndexFolder, catalog_content_key, index_folder_for, index_key
from shared.search.settings import RetrievalSettings
from shared.search.vectors import VectorIndex
from shared.ttl_cache import TtlLruCache

__all__ = [
    "Bm25Retriever",
    "EmbeddingRetriever",
    "HybridRetriever",
    "RetrievalSettings",
    "Retriever",
    "SearchFilters",
    "ToolDocument",
    "ToolHit",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolHit:
    """One search result."""

    name: str
    """The tool's name."""
    score: float
    """Calibrated relevance in [0, 1]; unrelated tools score near 0."""
    matched_terms: tuple[str, ...] = ()
    """Query word stems found in the tool's name, description or parameters (from BM25)."""
    retrievers: tuple[str, ...] = ()
    """Which retrievers scored the tool above zero: ``"bm25"``, ``"embedding"``."""
    clause: str | None = None
    """For a multi-part request, the part of the query that found the tool."""


@runtime_checkable
class Retriever(Protocol):
    """Finds the tools for a request."""

    def search(self, query: str, k: int, filters: SearchFilters | None = None) -> list[ToolHit]:
        """The ``k`` best tools for ``query``, best first."""
        ...


def _documents(items: Iterable[Mapping[str, Any] | ToolDocument]) -> list[ToolDocument]:
    """Documents from specs or documents; a later tool with the same name replaces an earlier one."""
    by_name: dict[str, ToolDocument] = {}
    for item in items:
        doc = item if isinstance(item, ToolDocument) else ToolDocument.from_spec(item)
        by_name[doc.name] = doc
    return list(by_name.values())


class _Documents:
    """The indexed tools' documents, built on first use when the index came from disk."""

    def __init__(self, build: Callable[[], list[ToolDocument]]) -> None:
        self._build = build
        self._docs: list[ToolDocument] | None = None

    def get(self) -> list[ToolDocument]:
        if self._docs is None:
            self._docs = self._build()
        return self._docs


class Bm25Retriever:
    """BM25 over tool names (split into words), descriptions, parameter names and parameter descriptions."""

    name = "bm25"

    def __init__(self, documents: Iterable[Mapping[str, Any] | ToolDocument]) -> None:
        docs = _documents(documents)
        names = [d.name for d in docs]
        self._set(Bm25Index.build([d.terms for d in docs]), names, name_ranks(names), FilterMasks.of(docs),
                  _Documents(lambda: docs))

    @classmethod
    def _of(cls, index: Bm25Index, names: list[str], ranks: np.ndarray, masks: FilterMasks, docs: _Documents,
            ) -> Bm25Retriever:
        retriever = cls.__new__(cls)
        retriever._set(index, names, ranks, masks, docs)
        return retriever

    def _set(self, index: Bm25Index, names: list[str], ranks: np.ndarray, masks: FilterMasks, docs: _Documents,
             ) -> None:
        self._index, self._names, self._ranks, self._masks, self._docs = index, names, ranks, masks, docs

    @property
    def documents(self) -> list[ToolDocument]:
        """The indexed tools, in index order."""
        return self._docs.get()

    def scores(self, query: str) -> np.ndarray:
        """Calibrated BM25 score of every document (aligned with :attr:`documents`)."""
        return self._index.scores(tokenize(query))[1]

    def matched_terms(self, position: int, query: str) -> tuple[str, ...]:
        """The query's word stems found in document ``position``."""
        return tuple(self._index.matched_terms(position, tokenize(query)))

    def search(self, query: str, k: int, filters: SearchFilters | None = None) -> list[ToolHit]:
        """The ``k`` best tools by BM25."""
        scores = self.scores(query)
        return [
            ToolHit(
                name=self._names[i],
                score=round(float(scores[i]), 4),
                matched_terms=self.matched_terms(i, query),
                retrievers=("bm25",) if scores[i] > 0 else (),
            )
            for i in _top(scores, k, self._masks.get(filters), self._ranks)
        ]


class EmbeddingRetriever:
    """Cosine similarity between the query and each tool's rendered text (all-MiniLM-L6-v2).

    Tool vectors come from ``cache`` when present there; only the missing ones are embedded: with
    ``index_encoder`` if given; else, when at least ``bulk_threshold`` texts are missing and ``encoder`` is a
    packaged :class:`~shared.search.embedding.PackagedMiniLm`, with the multi-threaded
    :func:`~shared.search.embedding.bulk_encoder`
    (same vectors, faster on large batches); else with ``encoder``. Queries always use ``encoder``.
    """

    name = "embedding"

    def __init__(
        self,
        documents: Iterable[Mapping[str, Any] | ToolDocument],
        *,
        encoder: Encoder | None = None,
        cache: EmbeddingCache | None = None,
        index_encoder: Encoder | None = None,
        cosine_floor: float = RetrievalSettings.cosine_floor,
        cosine_ceiling: float = RetrievalSettings.cosine_ceiling,
        bulk_threshold: int = 256,
    ) -> None:
        self._bulk_threshold = bulk_threshold
        self.encoder: Encoder = encoder if encoder is not None else shared_encoder()
        self._index_encoder = index_encoder
        if cache is not None and cache.encoder_key != self.encoder.cache_key:
            raise ValueError(f"cache is for {cache.encoder_key}, encoder makes {self.encoder.cache_key}")
        self.cache = cache if cache is not None else EmbeddingCache(self.encoder.cache_key)
        self._set_calibration(cosine_floor, cosine_ceiling)
        docs = _documents(documents)
        self._names = [d.name for d in docs]
        self._ranks = name_ranks(self._names)
        self._masks = FilterMasks.of(docs)
        self._docs = _Documents(lambda: docs)
        keys = [text_key(d.text) for d in docs]
        matrix, found = self.cache.fetch(keys, self.encoder.dim)
        missing = np.flatnonzero(~found).tolist()
        if missing:
            vectors = self._encoder_for(len(missing)).encode([docs[i].text for i in missing])
            matrix[missing] = vectors
            self.cache.put([keys[i] for i in missing], vectors)
        self._vectors = VectorIndex(matrix)
        self.embedded = len(missing)
        """How many tool texts construction had to embed (the rest came from the cache)."""
        logger.info("embedding index: %d tools, %d embedded, %d from cache", len(keys), len(missing),
                    len(keys) - len(missing))

    @classmethod
    def _of(cls, vectors: VectorIndex, names: list[str], ranks: np.ndarray, masks: FilterMasks, docs: _Documents, *,
            encoder: Encoder, cache: EmbeddingCache, cosine_floor: float, cosine_ceiling: float,
            ) -> EmbeddingRetriever:
        """A retriever over tool vectors already at hand (a loaded index bundle)."""
        retriever = cls.__new__(cls)
        retriever._bulk_threshold, retriever._index_encoder = 256, None
        retriever.encoder, retriever.cache = encoder, cache
        retriever._set_calibration(cosine_floor, cosine_ceiling)
        retriever._names, retriever._ranks, retriever._masks, retriever._docs = names, ranks, masks, docs
        retriever._vectors, retriever.embedded = vectors, 0
        return retriever

    def _set_calibration(self, cosine_floor: float, cosine_ceiling: float) -> None:
        self._floor = np.float32(cosine_floor)
        self._span = np.float32(cosine_ceiling - cosine_floor)

    @property
    def documents(self) -> list[ToolDocument]:
        """The indexed tools, in index order."""
        return self._docs.get()

    def _encoder_for(self, count: int) -> Encoder:
        if self._index_encoder is not None:
            return self._index_encoder
        if count >= self._bulk_threshold and isinstance(self.encoder, PackagedMiniLm):
            bulk = bulk_encoder(self.encoder.max_tokens)
            if bulk is not None:
                logger.info("embedding %d tool texts with the multi-threaded %s", count, type(bulk).__name__)
                return bulk
        return self.encoder

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors for query texts."""
        return self.encoder.encode(list(texts))

    def scores_for_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Calibrated scores, shape ``(len(vectors), len(documents))``."""
        return np.clip((self.cosines_for_vectors(vectors) - self._floor) / self._span, 0.0, 1.0)

    def cosines_for_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Raw cosine similarities, shape ``(len(vectors), len(documents))``."""
        return self._vectors.cosines(vectors)

    def scores(self, query: str) -> np.ndarray:
        """Calibrated embedding score of every document (aligned with :attr:`documents`)."""
        return self.scores_for_vectors(self.embed_queries([query]))[0]

    def scores_at(self, vector: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Calibrated scores of one query vector against the documents at ``positions`` only."""
        return np.clip((self._vectors.cosines_at(vector, positions) - self._floor) / self._span, 0.0, 1.0)

    def search(self, query: str, k: int, filters: SearchFilters | None = None) -> list[ToolHit]:
        """The ``k`` tools most similar to ``query``."""
        scores = self.scores(query)
        return [
            ToolHit(name=self._names[i], score=round(float(scores[i]), 4),
                    retrievers=("embedding",) if scores[i] > 0 else ())
            for i in _top(scores, k, self._masks.get(filters), self._ranks)
        ]


class HybridRetriever:
    """BM25 and embedding scores fused by a weighted sum; multi-part requests searched clause by clause.

    A request with several tasks (see :func:`shared.search.clauses.split_clauses`) is scored clause by clause
    (:func:`shared.search.fusion.lead_then_interleave`): the ranking interleaves the clauses' own rankings (each
    clause's best tool, then each clause's second best, ...) so that every task's tools reach the top k, led by the
    clause top the whole request scores highest. A tool's score is its best score over the clauses. The
    ablations in ``benchmarks/retrieval_eval.py`` compare this with RRF, with scoring the whole request only, and
    with taking the maximum over clauses.

    Immutable: when the catalog changes, build a new one over the same embedding cache (only new or changed tool
    texts are embedded), as the runtime does. Over a local embedding cache (``cache_dir``, or a ``cache`` on a
    :class:`LocalFolderStore`) the derived index is saved beside the cache and memory-mapped by the next process
    with the same catalog (``content_key`` names the catalog's content, e.g. the catalog version; by default a
    hash of the tools is computed).
    """

    def __init__(
        self,
        documents: Iterable[Mapping[str, Any] | ToolDocument],
        *,
        settings: RetrievalSettings | None = None,
        encoder: Encoder | None = None,
        cache: EmbeddingCache | None = None,
        index_encoder: Encoder | None = None,
        clock: Callable[[], float] = time.monotonic,
        content_key: str | None = None,
    ) -> None:
        self.settings = settings or RetrievalSettings()
        self.settings.validate()
        encoder = encoder if encoder is not None else shared_encoder(self.settings.max_tokens)
        if cache is None and self.settings.cache_dir:
            cache = EmbeddingCache(encoder.cache_key, LocalFolderStore(self.settings.cache_dir))
        items = list(documents)
        folder = index_folder_for(cache, self.settings.index_bundles_kept)
        key = index_key(content_key or catalog_content_key(items), encoder.cache_key) if folder else ""
        bundle = folder.load(key) if folder else None
        self.loaded_from_disk = bundle is not None
        """Whether the index was memory-mapped from a saved bundle instead of derived from the tools."""
        if bundle is not None and folder is not None:
            lazy_docs = _Documents(lambda: _documents(items))
            masks = FilterMasks(lambda: _saved_filter_fields(folder, key, lazy_docs))
            parts = bundle.names, bundle.name_ranks, masks, lazy_docs
            self._pair = Bm25Retriever._of(bundle.bm25, *parts), EmbeddingRetriever._of(
                bundle.vectors, *parts, encoder=encoder,
                cache=cache if cache is not None else EmbeddingCache(encoder.cache_key),
                cosine_floor=self.settings.cosine_floor, cosine_ceiling=self.settings.cosine_ceiling)
        else:
            docs = _documents(items)
            self._pair = Bm25Retriever(docs), EmbeddingRetriever(
                docs,
                encoder=encoder,
                cache=cache,
                index_encoder=index_encoder,
                cosine_floor=self.settings.cosine_floor,
                cosine_ceiling=self.settings.cosine_ceiling,
            )
            if folder is not None:
                folder.save(key, IndexBundle(
                    names=self._pair[0]._names, name_ranks=self._pair[0]._ranks, bm25=self._pair[0]._index,
                    vectors=self._pair[1]._vectors,
                    tags=[d.tags for d in docs], sources=[d.source for d in docs]))
        self._results: TtlLruCache[list[ToolHit]] = TtlLruCache(
            self.settings.lru_size, self.settings.lru_ttl_seconds, clock
        )

    @classmethod
    def from_specs(
        cls,
        specs: Iterable[Mapping[str, Any]],
        *,
        settings: RetrievalSettings | None = None,
        encoder: Encoder | None = None,
        cache: EmbeddingCache | None = None,
        content_key: str | None = None,
    ) -> HybridRetriever:
        """Index OpenAI-shaped tool specs (plain or ``{"type": "function", "function": {...}}``).

        Optional spec keys ``tags`` (list of strings) and ``source`` (string) feed :class:`SearchFilters`.
        ``content_key``: a string that changes whenever the specs do (see the class docstring).
        """
        return cls(list(specs), settings=settings, encoder=encoder, cache=cache, content_key=content_key)

    @property
    def bm25(self) -> Bm25Retriever:
        """The BM25 half."""
        return self._pair[0]

    @property
    def embedding(self) -> EmbeddingRetriever:
        """The embedding half."""
        return self._pair[1]

    @property
    def documents(self) -> list[ToolDocument]:
        """The indexed tools, in index order (rebuilt from the tools on first use after a load from disk)."""
        return self._pair[0].documents

    @property
    def names(self) -> list[str]:
        """The indexed tools' names, in index order."""
        return self._pair[0]._names

    def __len__(self) -> int:
        return len(self.names)

    def warm_up(self) -> None:
        """Load the embedding model (if not yet) and run one search, so the first real query is fast."""
        encoder = self.embedding.encoder
        if isinstance(encoder, PackagedMiniLm):
            encoder.warm_up()
        self._search("warm up", 1, None, 0.0)

    def search(
        self,
        query: str,
        k: int | None = None,
        filters: SearchFilters | None = None,
        *,
        min_score: float | None = None,
    ) -> list[ToolHit]:
        """The best tools for ``query``: at most ``k`` (default and cap from settings), best first.

        Hits scoring below ``min_score`` (default ``settings.min_score``) are dropped.
        """
        k = self.settings.default_k if k is None else max(0, min(int(k), self.settings.max_k))
        min_score = self.settings.min_score if min_score is None else min_score
        if k == 0 or not query.strip() or not len(self):
            return []
        key = (query, k, filters, min_score)
        cached = self._results.get(key)
        if cached is not None:
            return list(cached)
        hits = self._search(query, k, filters, min_score)
        self._results.put(key, list(hits))
        return hits

    def _search(self, query: str, k: int, filters: SearchFilters | None, min_score: float) -> list[ToolHit]:
        bm25, embedding = self._pair
        texts = split_clauses(query) if self.settings.split_clauses else [query]
        texts = texts or [query]
        w_bm25 = np.float32(self.settings.bm25_weight)
        w_emb = np.float32(self.settings.embedding_weight)
        bm25_scores = np.stack([bm25.scores(t) for t in texts])
        vectors = embedding.embed_queries(texts)
        emb_scores = embedding._vectors.fusion_scores(  # exact wherever a clause's top k can be (shared.search.vectors)
            vectors, bm25_scores, floor=self.settings.cosine_floor,
            span=self.settings.cosine_ceiling - self.settings.cosine_floor, bm25_weight=self.settings.bm25_weight,
            embedding_weight=self.settings.embedding_weight, k=k, mask=bm25._masks.get(filters))
        fused = w_bm25 * bm25_scores + w_emb * emb_scores

        def whole(ids: np.ndarray) -> np.ndarray:  # the whole request's fused score of a few tools
            vector = embedding.embed_queries([query])[0]
            return w_bm25 * bm25.scores(query)[ids] + w_emb * embedding.scores_at(vector, ids)

        names = bm25._names
        order = lead_then_interleave(fused, k, bm25._masks.get(filters), partial(_top, ranks=bm25._ranks), whole)
        if len(texts) > 1 and embedding._vectors.prefiltered:  # a hit's other clauses' scores may be bounds only
            ids = np.asarray(order, dtype=np.int64)
            emb_scores[:, ids] = np.stack([embedding.scores_at(vector, ids) for vector in vectors])
            fused[:, ids] = w_bm25 * bm25_scores[:, ids] + w_emb * emb_scores[:, ids]
        hits: list[ToolHit] = []
        for i in order:
            column = fused[:, i]
            row = int(column.argmax())  # the clause that found it
            score = float(column[row])
            if score < min_score:
                continue
            sources = tuple(
                n for n, s in (("bm25", bm25_scores[row, i]), ("embedding", emb_scores[row, i])) if s > 0
            )
            hits.append(
                ToolHit(
                    name=names[i],
                    score=round(score, 4),
                    matched_terms=bm25.matched_terms(i, texts[row]),
                    retrievers=sources,
                    clause=texts[row] if len(texts) > 1 else None,
                )
            )
        return hits


def _saved_filter_fields(folder: IndexFolder, key: str, docs: _Documents) -> tuple[
        Sequence[frozenset[str]], Sequence[str]]:
    try:
        return folder.filter_fields(key)
    except (OSError, ValueError, KeyError, TypeError):  # pruned or damaged meanwhile: derive them again
        return [d.tags for d in docs.get()], [d.source for d in docs.get()]
