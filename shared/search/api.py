"""``POST /api/tools/search``: parse and check the request, run the hybrid search, present the hits."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from shared.errors import QUOTED_CHARS, InvalidRequest, quoted
from shared.models import parse_json
from shared.search.retrieval import HybridRetriever, RetrievalSettings, SearchFilters

__all__ = ["SearchRequest", "load_model_with_app", "parse_search_request", "search_tools"]

logger = logging.getLogger(__name__)

_MAX_QUERY_CHARS = 4000
_FILTER_KEYS = ("tags", "source")


class SearchRequest:
    """A checked search request."""

    def __init__(self, query: str, k: int, filters: SearchFilters | None, min_score: float | None) -> None:
        self.query = query
        self.k = k
        self.filters = filters
        self.min_score = min_score


def _strings(value: Any, field: str) -> frozenset[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidRequest(f"{field} must be a string or a list of strings", field=field)
    return frozenset(value)


def parse_search_request(body: bytes | str, settings: RetrievalSettings) -> SearchRequest:
    """``{"query": str, "k": int, "filters": {"tags": [...], "source": [...]}, "min_score": float}``; raises
    :class:`InvalidRequest` naming the field."""
    data = parse_json(body or b"null", message="the body must be JSON")
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object with a query", field="body")
    unknown = sorted(set(data) - {"query", "k", "filters", "min_score"})
    if unknown:
        raise InvalidRequest(f"unknown field {quoted(unknown[0])}; allowed: query, k, filters, min_score",
                             field=unknown[0][:QUOTED_CHARS])
    query = data.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InvalidRequest("query must be a non-empty string", field="query")
    if len(query) > _MAX_QUERY_CHARS:
        raise InvalidRequest(f"query may be at most {_MAX_QUERY_CHARS} characters", field="query")
    k = data.get("k", settings.default_k)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= settings.max_k:
        raise InvalidRequest(f"k must be an integer from 1 to {settings.max_k}", field="k")
    filters = None
    raw_filters = data.get("filters")
    if raw_filters is not None:
        if not isinstance(raw_filters, dict):
            raise InvalidRequest("filters must be an object", field="filters")
        bad = sorted(set(raw_filters) - set(_FILTER_KEYS))
        if bad:
            raise InvalidRequest(f"unknown filter {quoted(bad[0])}; filters are: tags, source",
                                 field=f"filters.{bad[0][:QUOTED_CHARS]}")
        filters = SearchFilters(
            tags=_strings(raw_filters["tags"], "filters.tags") if "tags" in raw_filters else frozenset(),
            sources=_strings(raw_filters["source"], "filters.source") if "source" in raw_filters else frozenset(),
        )
    min_score = data.get("min_score")
    if min_score is not None and (not isinstance(min_score, int | float) or isinstance(min_score, bool)
                                  or not 0 <= min_score <= 1):
        raise InvalidRequest("min_score must be a number from 0 to 1", field="min_score")
    return SearchRequest(query.strip(), k, filters, None if min_score is None else float(min_score))


def search_tools(index: HybridRetriever, request: SearchRequest) -> dict[str, Any]:
    """The ranked hits with their scores and why they matched."""
    started = time.perf_counter()
    hits = index.search(request.query, request.k, request.filters)
    if request.min_score is not None:
        hits = [hit for hit in hits if hit.score >= request.min_score]
    return {
        "query": request.query,
        "results": [{"name": h.name, "score": round(h.score, 4), "matched_terms": list(h.matched_terms),
                     "retrievers": list(h.retrievers), "clause": h.clause} for h in hits],
        "took_ms": round((time.perf_counter() - started) * 1000.0, 2),
    }


def load_model_with_app() -> None:
    """Load the query encoder now, while the app is being imported and serves nothing yet, when
    ``WEFT_SEARCH_LOAD_MODEL_WITH_APP`` is on (the default). A failure is logged (type only), not raised: the first
    search then reports it."""
    from shared.search.embedding.encoders import shared_encoder

    try:
        settings = RetrievalSettings.from_env(os.environ)
        if settings.load_model_with_app:
            shared_encoder(settings.max_tokens).warm_up()
    except Exception as exc:  # an app that cannot search must still serve its runs
        logger.warning("the embedding model did not load with the app: %s", type(exc).__name__)
