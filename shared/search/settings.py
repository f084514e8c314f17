"""Tool-search settings: result counts, fusion weight, cosine calibration, model, caches (``WEFT_SEARCH_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.search.embedding import DEFAULT_MODEL_ID

__all__ = ["RetrievalSettings"]


@dataclass(frozen=True)
class RetrievalSettings:
    """Tool-search settings (environment names ``WEFT_SEARCH_*``)."""

    default_k: int = 10
    """WEFT_SEARCH_K: results when the caller does not say."""
    max_k: int = 100
    """WEFT_SEARCH_MAX_K: the most results one search returns."""
    min_score: float = 0.0
    """WEFT_SEARCH_MIN_SCORE: drop hits below this calibrated score. 0 keeps the k best whatever they score; 0.25
    keeps 99% of relevant tools and drops ~96% of unrelated ones (measured by ``benchmarks/retrieval_eval.py``)."""
    bm25_weight: float = 0.4
    """WEFT_SEARCH_BM25_WEIGHT: BM25's share of the hybrid score (the embedding gets the rest)."""
    cosine_floor: float = 0.15
    """WEFT_SEARCH_COSINE_FLOOR: cosine mapped to 0 (unrelated texts sit at or below it)."""
    cosine_ceiling: float = 0.75
    """WEFT_SEARCH_COSINE_CEILING: cosine mapped to 1."""
    split_clauses: bool = True
    """WEFT_SEARCH_SPLIT_CLAUSES: search each task of a multi-part request separately."""
    model_id: str = DEFAULT_MODEL_ID
    """WEFT_SEARCH_MODEL_ID: the embedding model (only the packaged all-MiniLM-L6-v2 is supported)."""
    max_tokens: int = 256
    """WEFT_SEARCH_MAX_TOKENS: tool texts are truncated to this many tokens before embedding."""
    cache_dir: str = ""
    """WEFT_SEARCH_CACHE_DIR: local folder for the embedding cache ("" = memory only)."""
    cache_container: str = ""
    """WEFT_SEARCH_CACHE_CONTAINER: Blob container for the embedding cache (the client is built by the caller)."""
    warm_at_start: bool = True
    """WEFT_SEARCH_WARM_AT_START: build the index and load the model on a background thread when the runtime starts
    (else on the first search or readiness probe)."""
    load_model_with_app: bool = True
    """WEFT_SEARCH_LOAD_MODEL_WITH_APP: load the embedding model (weights, tokenizer, ONNX Runtime session) when the app
    is imported, before it serves requests: creating the session and reading the weights hold the GIL for ~0.2 s,
    which would otherwise stall every request in flight when the first search or the warm-up loads them."""
    warm_exit_wait_s: float = 60.0
    """WEFT_SEARCH_WARM_EXIT_WAIT_S: how long a process that is exiting waits for a warm-up still running (ONNX
    Runtime aborts the process when torn down mid-inference)."""
    index_bundles_kept: int = 2
    """WEFT_SEARCH_INDEX_BUNDLES_KEPT: saved search indexes (one per catalog version, ~170 MB at 100k tools) kept
    beside a local embedding cache; the newest are kept."""
    lru_size: int = 1024
    """WEFT_SEARCH_LRU_SIZE: query results kept (0 disables the result cache)."""
    lru_ttl_seconds: float = 300.0
    """WEFT_SEARCH_LRU_TTL_SECONDS: how long a cached query result stays valid."""

    @property
    def embedding_weight(self) -> float:
        """The embedding's share of the hybrid score."""
        return 1.0 - self.bm25_weight

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RetrievalSettings:
        """Read ``WEFT_SEARCH_*`` variables; unset ones keep their defaults. Raises ``ValueError`` on bad values."""
        from shared.settings import env_bool, env_float, env_int, env_str

        settings = cls(
            default_k=env_int(env, "WEFT_SEARCH_K", cls.default_k, minimum=1),
            max_k=env_int(env, "WEFT_SEARCH_MAX_K", cls.max_k, minimum=1),
            min_score=env_float(env, "WEFT_SEARCH_MIN_SCORE", cls.min_score, minimum=0.0),
            bm25_weight=env_float(env, "WEFT_SEARCH_BM25_WEIGHT", cls.bm25_weight, minimum=0.0),
            cosine_floor=env_float(env, "WEFT_SEARCH_COSINE_FLOOR", cls.cosine_floor),
            cosine_ceiling=env_float(env, "WEFT_SEARCH_COSINE_CEILING", cls.cosine_ceiling),
            split_clauses=env_bool(env, "WEFT_SEARCH_SPLIT_CLAUSES", cls.split_clauses),
            model_id=env_str(env, "WEFT_SEARCH_MODEL_ID", cls.model_id),
            max_tokens=env_int(env, "WEFT_SEARCH_MAX_TOKENS", cls.max_tokens, minimum=8),
            cache_dir=env_str(env, "WEFT_SEARCH_CACHE_DIR", cls.cache_dir),
            cache_container=env_str(env, "WEFT_SEARCH_CACHE_CONTAINER", cls.cache_container),
            warm_at_start=env_bool(env, "WEFT_SEARCH_WARM_AT_START", cls.warm_at_start),
            load_model_with_app=env_bool(env, "WEFT_SEARCH_LOAD_MODEL_WITH_APP", cls.load_model_with_app),
            warm_exit_wait_s=env_float(env, "WEFT_SEARCH_WARM_EXIT_WAIT_S", cls.warm_exit_wait_s, minimum=0.0),
            index_bundles_kept=env_int(env, "WEFT_SEARCH_INDEX_BUNDLES_KEPT", cls.index_bundles_kept, minimum=1),
            lru_size=env_int(env, "WEFT_SEARCH_LRU_SIZE", cls.lru_size, minimum=0),
            lru_ttl_seconds=env_float(env, "WEFT_SEARCH_LRU_TTL_SECONDS", cls.lru_ttl_seconds, minimum=0.0),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ``ValueError`` if the settings contradict each other."""
        if self.bm25_weight > 1.0:
            raise ValueError(f"WEFT_SEARCH_BM25_WEIGHT must be within [0, 1], got {self.bm25_weight}")
        if self.cosine_ceiling <= self.cosine_floor:
            raise ValueError("WEFT_SEARCH_COSINE_CEILING must be above WEFT_SEARCH_COSINE_FLOOR")
        if self.default_k > self.max_k:
            raise ValueError(f"WEFT_SEARCH_K ({self.default_k}) exceeds WEFT_SEARCH_MAX_K ({self.max_k})")
        if self.model_id != DEFAULT_MODEL_ID:
            raise ValueError(f"WEFT_SEARCH_MODEL_ID: only {DEFAULT_MODEL_ID} is packaged, got {self.model_id!r}")
