"""The int8 vector pre-filter: its error bound holds, and the fused top k it yields is the exact one."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shared.search.vectors as vectors_module
from shared.search.embedding.cache import EmbeddingCache, LocalFolderStore
from shared.search.retrieval import HybridRetriever, RetrievalSettings, SearchFilters, _top, name_ranks
from shared.search.vectors import QuantizedVectors, VectorIndex

FLOOR, CEILING, W_BM25 = 0.15, 0.75, 0.4


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _clustered(count: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    """Unit vectors in tight clusters with exact duplicates, like near-identical tools of one API."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, count // 20), dim))
    rows = centres[rng.integers(0, len(centres), count)] + 0.3 * rng.standard_normal((count, dim))
    rows[1::17] = rows[0::17][: len(rows[1::17])]  # duplicates: ties that only the name breaks
    return _unit(rows)


def _fused_top(index: VectorIndex, queries: np.ndarray, bm25: np.ndarray, k: int, mask: np.ndarray | None,
               ranks: np.ndarray) -> list[list[int]]:
    emb = index.fusion_scores(queries, bm25, floor=FLOOR, span=CEILING - FLOOR, bm25_weight=W_BM25,
                              embedding_weight=1 - W_BM25, k=k, mask=mask)
    fused = np.float32(W_BM25) * bm25 + np.float32(1 - W_BM25) * emb
    return [_top(row, k, mask, ranks) for row in fused]


def test_the_error_bound_holds_for_every_tool() -> None:
    matrix = _clustered(3000)
    quantized = QuantizedVectors.of(matrix)
    queries = _unit(np.vstack([matrix[:5] + 0.05, np.random.default_rng(1).standard_normal((5, 384))]))
    estimates, bounds = quantized.estimate(queries)
    exact = queries @ matrix.T
    assert np.all(np.abs(estimates - exact) <= bounds)
    assert float(bounds.max()) < 0.05  # tight enough to prune: a loose bound would make every tool a candidate


def test_onnx_runtime_and_numpy_int8_products_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    matrix = _clustered(500)
    queries = _unit(np.random.default_rng(2).standard_normal((3, 384)))
    with_ort = QuantizedVectors.of(matrix).estimate(queries)
    monkeypatch.setattr(vectors_module, "_matmul_integer_session", lambda codes_t: None)
    with_numpy = QuantizedVectors.of(matrix).estimate(queries)
    np.testing.assert_array_equal(with_ort[0], with_numpy[0])
    np.testing.assert_array_equal(with_ort[1], with_numpy[1])


@pytest.mark.parametrize("k", [1, 10, 50])
def test_pre_filtered_top_k_equals_exact_top_k(k: int) -> None:
    matrix = _clustered(5000, seed=3)
    rng = np.random.default_rng(4)
    ranks = name_ranks([f"tool_{i:05d}" for i in rng.permutation(len(matrix))])
    fast, exact = VectorIndex(matrix, prefilter_min=0), VectorIndex(matrix, prefilter_min=2**62, float64=True)
    assert fast.prefiltered and not exact.prefiltered
    for trial in range(20):
        rows = 1 + trial % 3  # one to three clauses
        queries = _unit(matrix[rng.integers(0, len(matrix), rows)] + 0.2 * rng.standard_normal((rows, 384)))
        bm25 = np.where(rng.random((rows, len(matrix))) < 0.01, rng.random((rows, len(matrix))), 0).astype(np.float32)
        mask = rng.random(len(matrix)) < 0.3 if trial % 4 == 0 else None
        assert _fused_top(fast, queries, bm25, k, mask, ranks) == _fused_top(exact, queries, bm25, k, mask, ranks)


def test_candidates_are_scored_exactly_and_the_rest_stay_below() -> None:
    matrix = _clustered(4000, seed=5)
    query = _unit(matrix[7:8] + 0.1)
    bm25 = np.zeros((1, len(matrix)), dtype=np.float32)
    kwargs: dict[str, Any] = {"floor": -1.0, "span": 2.0, "bm25_weight": W_BM25, "embedding_weight": 1 - W_BM25,
                              "k": 10}  # no cosine clipped to 0, so a lower bound shows
    fast = VectorIndex(matrix, prefilter_min=0).fusion_scores(query, bm25, **kwargs)[0]
    exact = VectorIndex(matrix, float64=True).fusion_scores(query, bm25, **kwargs)[0]
    tenth = np.sort(exact)[-10]
    top = exact >= tenth
    np.testing.assert_array_equal(fast[top], exact[top])
    assert np.all(fast <= exact + 1e-6)
    assert np.all(fast[~top] < tenth)
    assert np.any(fast < exact)  # it did prune: some tools got only their lower bound


def test_a_mask_smaller_than_k_keeps_every_masked_tool_exact() -> None:
    matrix = _clustered(1000, seed=6)
    mask = np.zeros(len(matrix), dtype=bool)
    mask[[3, 500, 999]] = True
    query = _unit(matrix[500:501] + 0.3)
    bm25 = np.zeros((1, len(matrix)), dtype=np.float32)
    kwargs: dict[str, Any] = {"floor": FLOOR, "span": CEILING - FLOOR, "bm25_weight": W_BM25,
                              "embedding_weight": 1 - W_BM25, "k": 10, "mask": mask}
    fast = VectorIndex(matrix, prefilter_min=0).fusion_scores(query, bm25, **kwargs)
    exact = VectorIndex(matrix, float64=True).fusion_scores(query, bm25, **kwargs)
    np.testing.assert_array_equal(fast[0, mask], exact[0, mask])


def _specs(count: int) -> list[dict[str, Any]]:
    services, verbs = ("billing", "crm", "storage", "mail", "travel"), ("get", "list", "create", "delete", "send")
    nouns = ("invoice", "customer", "bucket", "message", "flight", "order", "report", "ticket")
    specs = []
    for i in range(count):
        s, v, n = services[i % 5], verbs[(i // 5) % 5], nouns[(i // 25) % 8]
        specs.append({"name": f"{s}_{v}_{n}_{i}", "description": f"{v.title()} a {n} in the {s} service.",
                      "tags": [s], "source": s})
    return specs


def test_hybrid_search_over_a_saved_pre_filtered_index_answers_as_exact_search(
        tmp_path: Path, encoder: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectors_module, "PREFILTER_MIN_TOOLS", 100)
    specs = _specs(400)
    settings = RetrievalSettings(lru_size=0)

    def build() -> HybridRetriever:
        cache = EmbeddingCache(encoder.cache_key, LocalFolderStore(tmp_path / "cache"))
        return HybridRetriever(specs, settings=settings, encoder=encoder, cache=cache, content_key="v1")

    build()
    loaded = build()
    assert loaded.loaded_from_disk
    fast_index = loaded.embedding._vectors
    assert fast_index.prefiltered and fast_index._quantized is not None  # loaded with the bundle, not rebuilt
    queries = ["delete an invoice in billing", "send a message, then list the flights", "crm customer report",
               "create a ticket", "zebra"]
    filters = [None, SearchFilters(tags=frozenset({"mail"}))]
    fast = [loaded.search(q, 10, f) for q in queries for f in filters]
    loaded.embedding._vectors = VectorIndex(fast_index.vectors, prefilter_min=2**62, float64=True)
    exact = [loaded.search(q, 10, f) for q in queries for f in filters]
    assert fast == exact
    assert any(fast)


@pytest.mark.parametrize("case", ["dense", "mostly zero", "few positives", "all equal", "small"])
def test_kth_largest_matches_sorting(case: str) -> None:
    rng = np.random.default_rng(7)
    size = 50 if case == "small" else 20_000
    values = {
        "dense": rng.random(size),
        "mostly zero": np.where(rng.random(size) < 0.01, rng.random(size), 0.0),
        "few positives": np.where(np.arange(size) % 5000 == 3, 0.5, 0.0),
        "all equal": np.full(size, 0.25),
        "small": rng.integers(0, 5, size) / 4,
    }[case].astype(np.float32)
    for k in (1, 10, 37):
        assert vectors_module.kth_largest(values, k) == np.sort(values)[-k]


class _ExactOnlyInEachRowsTopK(VectorIndex):
    """What the pre-filter promises and no more: a row's scores are exact for its own top k; elsewhere they may be
    any lower bound (here the lowest, 0)."""

    def fusion_scores(self, queries: np.ndarray, bm25: np.ndarray, **kwargs: Any) -> np.ndarray:
        scores = super().fusion_scores(queries, bm25, **kwargs)
        fused = kwargs["bm25_weight"] * bm25 + kwargs["embedding_weight"] * scores
        for row in range(len(scores)):
            outside = np.ones(scores.shape[1], dtype=bool)
            outside[np.argsort(-fused[row], kind="stable")[: kwargs["k"]]] = False
            scores[row, outside] = 0.0
        return scores

    @property
    def prefiltered(self) -> bool:
        return True


def test_a_split_requests_hits_report_exact_scores_and_clauses(tmp_path: Path, encoder: Any) -> None:
    # A hit found by one clause is scored by every clause to pick the one that found it: bounds are not enough there.
    retriever = HybridRetriever(_specs(400), settings=RetrievalSettings(lru_size=0), encoder=encoder)
    exact_index = retriever.embedding._vectors
    queries = ["send messages in billing, then list messages in billing",
               "send messages in storage, then list messages in storage", "send a message, then list the flights"]
    exact = [retriever.search(q, 10) for q in queries]
    retriever.embedding._vectors = _ExactOnlyInEachRowsTopK(exact_index.vectors)
    assert [retriever.search(q, 10) for q in queries] == exact
    assert any(len({h.clause for h in hits}) > 1 for hits in exact)  # the queries were split


def test_the_int8_graph_saved_once_serves_a_later_process() -> None:
    matrix = _clustered(700)
    queries = _unit(np.random.default_rng(3).standard_normal((2, 384)))
    here = QuantizedVectors.of(matrix).estimate(queries)[0]
    probe = ("import sys, numpy as np; import shared.search.vectors as v; "
             "v._matmul_integer_graph = None; "  # building the graph again would fail
             "m = np.load(sys.argv[1]); q = np.load(sys.argv[2]); "
             "np.save(sys.argv[3], v.QuantizedVectors.of(m).estimate(q)[0]); print('saved graph served')")
    with tempfile.TemporaryDirectory() as scratch:
        paths = [Path(scratch) / name for name in ("m.npy", "q.npy", "out.npy")]
        np.save(paths[0], matrix)
        np.save(paths[1], queries)
        done = subprocess.run([sys.executable, "-c", probe, *map(str, paths)], check=False, capture_output=True,
                              text=True, timeout=120, cwd=Path(__file__).resolve().parents[3])
        assert done.stdout.strip() == "saved graph served", done.stderr[-2000:]
        np.testing.assert_array_equal(np.load(paths[2]), here)
