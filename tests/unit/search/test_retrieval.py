"""Tool search end to end on a small catalog: ranking, multi-part requests, min_score, filters, cache, LRU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.search import retrieval
from shared.search.embedding.cache import EmbeddingCache, LocalFolderStore
from shared.search.retrieval import (
    Bm25Retriever,
    EmbeddingRetriever,
    HybridRetriever,
    RetrievalSettings,
    Retriever,
    SearchFilters,
    ToolHit,
)

from .fakes import CountingEncoder


def test_public_names() -> None:
    assert sorted(retrieval.__all__) == [
        "Bm25Retriever", "EmbeddingRetriever", "HybridRetriever", "RetrievalSettings", "Retriever", "SearchFilters",
        "ToolDocument", "ToolHit",
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("what's the weather like in Oslo right now", "get_weather"),
        ("will it rain in Berlin over the next three days", "get_forecast"),
        ("I need a plane ticket from JFK to LHR on Friday", "book_flight"),
        ("how much is 250 dollars in yen", "convertCurrency"),
        ("text my mum that I'm late", "send_sms"),
        ("what is the area of a triangle with base 10 and height 5", "calculate_triangle_area"),
        ("how many miles is 42 kilometres", "unit_convert"),
        ("make it warmer at home, 22 degrees", "set_thermostat"),
        ("put on some jazz", "play_music"),
        ("zip these log files", "compress_files"),
        ("which language is this written in: 'dziękuję bardzo'", "detect_language"),
        ("hash this string with sha256", "sha256_hash"),
    ],
    ids=["weather", "forecast", "flight", "currency", "sms", "triangle", "units", "thermostat", "music", "zip",
         "language", "hash"],
)
def test_the_right_tool_ranks_first(retriever: HybridRetriever, query: str, expected: str) -> None:
    assert retriever.search(query, 3)[0].name == expected


def test_small_catalogs_are_ranked_not_returned_in_insertion_order(encoder, catalog: list[dict[str, Any]]) -> None:
    forward = HybridRetriever.from_specs(catalog, encoder=encoder).search("send an email to Ann", 5)
    backward = HybridRetriever.from_specs(catalog[::-1], encoder=encoder).search("send an email to Ann", 5)
    assert [h.name for h in forward] == [h.name for h in backward]
    assert forward[0].name == "send_email"
    assert [h.score for h in forward] == sorted((h.score for h in forward), reverse=True)


def test_three_tool_catalog_is_ranked_too(encoder, catalog: list[dict[str, Any]]) -> None:
    tiny = HybridRetriever.from_specs([catalog[20], catalog[0], catalog[9]], encoder=encoder)  # hash, weather, email
    hits = tiny.search("email the weather report to Bob", 3)
    assert {h.name for h in hits[:2]} == {"send_email", "get_weather"}
    assert hits[2].name == "sha256_hash" and hits[2].score < hits[1].score


@pytest.mark.parametrize(
    ("query", "gold"),
    [
        ("book a flight to Rome, then convert the price to euros and email it to me",
         {"book_flight", "convertCurrency", "send_email"}),
        ("Find hotels in Lisbon and translate the reviews into German", {"book_hotel", "translate_text"}),
        ("read notes.txt, summarize it, and finally post the summary to the #team Slack channel",
         {"read_file", "summarize_text", "post_slack_message"}),
        ("Check the MSFT stock price. Then add a to-do to review my portfolio. Also set a calendar event for Monday",
         {"get_stock_price", "create_todo", "create_calendar_event"}),
    ],
    ids=["flight-currency-email", "hotel-translate", "file-summary-slack", "stock-todo-calendar"],
)
def test_multi_part_requests_surface_a_tool_for_every_part(retriever: HybridRetriever, query: str,
                                                           gold: set[str]) -> None:
    hits = retriever.search(query, 2 * len(gold))  # round-robin: each task's two best tools
    assert gold <= {h.name for h in hits}
    assert {h.clause for h in hits if h.name in gold} - {None}, "hits say which clause found them"


def test_hits_explain_why_they_matched(retriever: HybridRetriever) -> None:
    hit = retriever.search("book a flight to Rome", 1)[0]
    assert hit == ToolHit(name="book_flight", score=hit.score, matched_terms=("book", "flight"),
                          retrievers=("bm25", "embedding"), clause=None)


RELATED_THRESHOLD = 0.25
"""The calibrated score above which a tool is related (see the calibration table of retrieval_eval.py)."""


@pytest.mark.parametrize(
    ("query", "related"),
    [
        ("what's the weather in Paris", {"get_weather", "get_forecast"}),
        ("send an email to my landlord", {"send_email", "read_inbox"}),
        ("convert 100 euros to dollars", {"convertCurrency", "get_exchange_rate", "unit_convert"}),
    ],
    ids=["weather", "email", "currency"],
)
def test_min_score_separates_related_from_unrelated_tools(retriever: HybridRetriever, query: str,
                                                          related: set[str]) -> None:
    every = retriever.search(query, 50, min_score=0.0)
    assert len(every) == len(retriever)
    above = {h.name for h in every if h.score >= RELATED_THRESHOLD}
    assert every[0].name in related
    assert above <= related | {"send_sms", "post_slack_message", "get_stock_price"}, "unrelated tools stay below"
    kept = retriever.search(query, 50, min_score=RELATED_THRESHOLD)
    assert {h.name for h in kept} == above and all(h.score >= RELATED_THRESHOLD for h in kept)


def test_unrelated_query_scores_everything_low(retriever: HybridRetriever) -> None:
    hits = retriever.search("the mitochondria is the powerhouse of the cell", 50, min_score=0.0)
    assert max(h.score for h in hits) < RELATED_THRESHOLD
    assert retriever.search("the mitochondria is the powerhouse of the cell", 10, min_score=RELATED_THRESHOLD) == []


@pytest.mark.parametrize(
    ("filters", "allowed"),
    [
        (SearchFilters(tags=frozenset({"messaging"})), {"send_email", "read_inbox", "send_sms", "post_slack_message"}),
        (SearchFilters(sources=frozenset({"mail"})), {"send_email", "read_inbox"}),
        (SearchFilters(tags=frozenset({"messaging"}), sources=frozenset({"sms", "slack"})),
         {"send_sms", "post_slack_message"}),
        (SearchFilters(tags=frozenset({"no-such-tag"})), set()),
    ],
    ids=["tag", "source", "tag-and-source", "nothing"],
)
def test_filters_by_tag_and_source(retriever: HybridRetriever, filters: SearchFilters, allowed: set[str]) -> None:
    hits = retriever.search("send a message", 10, filters)
    assert {h.name for h in hits} == allowed


@pytest.mark.parametrize(
    ("k", "expected"), [(0, 0), (1, 1), (5, 5), (1000, 32)], ids=["zero", "one", "five", "beyond-catalog"]
)
def test_k_bounds(retriever: HybridRetriever, k: int, expected: int) -> None:
    assert len(retriever.search("weather", k)) == expected


def test_k_is_capped_by_max_k_and_defaults_from_settings(encoder, catalog: list[dict[str, Any]]) -> None:
    r = HybridRetriever.from_specs(catalog, encoder=encoder, settings=RetrievalSettings(default_k=3, max_k=4))
    assert len(r.search("weather")) == 3
    assert len(r.search("weather", 10)) == 4


@pytest.mark.parametrize("query", ["", "   "], ids=["empty", "blank"])
def test_blank_query_finds_nothing(retriever: HybridRetriever, query: str) -> None:
    assert retriever.search(query, 5) == []


def test_empty_catalog_finds_nothing(encoder) -> None:
    assert HybridRetriever.from_specs([], encoder=encoder).search("weather", 5) == []


def test_all_three_satisfy_the_retriever_protocol(encoder, catalog: list[dict[str, Any]]) -> None:
    retrievers = [Bm25Retriever(catalog), EmbeddingRetriever(catalog, encoder=encoder),
                  HybridRetriever.from_specs(catalog, encoder=encoder)]
    for r in retrievers:
        assert isinstance(r, Retriever)
        hits = r.search("convert currency", 2, SearchFilters(tags=frozenset({"finance"})))
        assert {h.name for h in hits} == {"convertCurrency", "get_exchange_rate"}


def test_single_retrievers_report_themselves(encoder, catalog: list[dict[str, Any]]) -> None:
    assert Bm25Retriever(catalog).search("send email", 1)[0].retrievers == ("bm25",)
    assert EmbeddingRetriever(catalog, encoder=encoder).search("send email", 1)[0].retrievers == ("embedding",)


def test_a_rebuilt_catalog_embeds_only_new_or_changed_tools(counting: CountingEncoder,
                                                            catalog: list[dict[str, Any]]) -> None:
    cache = EmbeddingCache(counting.cache_key)
    HybridRetriever.from_specs(catalog, encoder=counting, cache=cache)
    assert len(counting.texts) == len(catalog)
    counting.texts.clear()
    changed = dict(catalog[0], description="Current weather and air quality for a city.")
    added = {"name": "get_air_quality", "description": "Air quality index for a city."}
    r = HybridRetriever.from_specs([changed, added, *catalog[1:]], encoder=counting, cache=cache)
    assert sorted(t.split(":")[0] for t in counting.texts if "warm up" not in t) == ["get air quality", "get weather"]
    assert len(r) == len(catalog) + 1
    assert r.search("air quality in Delhi", 1)[0].name == "get_air_quality"


def test_a_warm_cache_embeds_nothing(tmp_path: Path, counting: CountingEncoder,
                                     catalog: list[dict[str, Any]]) -> None:
    store = LocalFolderStore(tmp_path)
    HybridRetriever.from_specs(catalog, encoder=counting, cache=EmbeddingCache(counting.cache_key, store))
    counting.texts.clear()
    again = HybridRetriever.from_specs(catalog, encoder=counting, cache=EmbeddingCache(counting.cache_key, store))
    assert counting.texts == []
    assert again.embedding.embedded == 0
    assert again.search("weather in Rome", 1)[0].name == "get_weather"


def test_cache_dir_setting_persists_embeddings(tmp_path: Path, counting: CountingEncoder,
                                               catalog: list[dict[str, Any]]) -> None:
    settings = RetrievalSettings(cache_dir=str(tmp_path))
    HybridRetriever.from_specs(catalog[:5], encoder=counting, settings=settings)
    assert any(p.suffix == ".npy" for p in tmp_path.rglob("*"))
    counting.texts.clear()
    HybridRetriever.from_specs(catalog[:5], encoder=counting, settings=settings)
    assert counting.texts == []


def test_cache_for_another_encoder_is_refused(encoder, catalog: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="cache is for"):
        EmbeddingRetriever(catalog, encoder=encoder, cache=EmbeddingCache("other-model@1"))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_query_results_are_cached_until_the_ttl_expires(counting: CountingEncoder,
                                                        catalog: list[dict[str, Any]]) -> None:
    clock = Clock()
    r = HybridRetriever(catalog, encoder=counting, clock=clock, settings=RetrievalSettings(lru_ttl_seconds=60))
    counting.texts.clear()
    first = r.search("weather in Rome", 3)
    second = r.search("weather in Rome", 3)
    assert first == second and counting.texts == ["weather in Rome"]
    clock.now = 61
    assert r.search("weather in Rome", 3) == first
    assert counting.texts == ["weather in Rome", "weather in Rome"]


def test_lru_size_zero_disables_the_result_cache(counting: CountingEncoder, catalog: list[dict[str, Any]]) -> None:
    r = HybridRetriever(catalog, encoder=counting, settings=RetrievalSettings(lru_size=0))
    counting.texts.clear()
    r.search("weather", 1)
    r.search("weather", 1)
    assert counting.texts == ["weather", "weather"]


def test_warm_up_loads_the_model(catalog: list[dict[str, Any]]) -> None:
    from shared.search.embedding import MiniLmEncoder

    enc = MiniLmEncoder()
    r = HybridRetriever.from_specs(catalog[:2], encoder=enc)  # embedding the catalog loads the model
    r.warm_up()
    assert enc.loaded


def test_duplicate_names_keep_the_last_spec(encoder) -> None:
    r = HybridRetriever.from_specs([{"name": "t", "description": "old"}, {"name": "t", "description": "new"}],
                                   encoder=encoder)
    assert len(r) == 1 and r.documents[0].description == "new"


def test_split_clauses_can_be_switched_off(encoder, catalog: list[dict[str, Any]]) -> None:
    r = HybridRetriever.from_specs(catalog, encoder=encoder, settings=RetrievalSettings(split_clauses=False))
    hits = r.search("book a flight to Rome, then convert the price to euros", 5)
    assert all(h.clause is None for h in hits)


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ({"WEFT_SEARCH_K": "7"}, "default_k", 7),
        ({"WEFT_SEARCH_MAX_K": "99"}, "max_k", 99),
        ({"WEFT_SEARCH_MIN_SCORE": "0.25"}, "min_score", 0.25),
        ({"WEFT_SEARCH_BM25_WEIGHT": "0.5"}, "bm25_weight", 0.5),
        ({"WEFT_SEARCH_COSINE_FLOOR": "0.1"}, "cosine_floor", 0.1),
        ({"WEFT_SEARCH_COSINE_CEILING": "0.9"}, "cosine_ceiling", 0.9),
        ({"WEFT_SEARCH_SPLIT_CLAUSES": "false"}, "split_clauses", False),
        ({"WEFT_SEARCH_MAX_TOKENS": "128"}, "max_tokens", 128),
        ({"WEFT_SEARCH_CACHE_DIR": "/var/cache/weft"}, "cache_dir", "/var/cache/weft"),
        ({"WEFT_SEARCH_CACHE_CONTAINER": "embeddings"}, "cache_container", "embeddings"),
        ({"WEFT_SEARCH_LRU_SIZE": "0"}, "lru_size", 0),
        ({"WEFT_SEARCH_LRU_TTL_SECONDS": "5"}, "lru_ttl_seconds", 5.0),
        ({}, "default_k", 10),
    ],
    ids=["k", "max-k", "min-score", "weight", "floor", "ceiling", "split", "tokens", "cache-dir", "container",
         "lru-size", "lru-ttl", "defaults"],
)
def test_settings_from_env(env: dict[str, str], field: str, value: object) -> None:
    assert getattr(RetrievalSettings.from_env(env), field) == value


@pytest.mark.parametrize(
    "env",
    [{"WEFT_SEARCH_K": "ten"}, {"WEFT_SEARCH_BM25_WEIGHT": "1.5"}, {"WEFT_SEARCH_K": "120"},
     {"WEFT_SEARCH_COSINE_FLOOR": "0.8"}, {"WEFT_SEARCH_MODEL_ID": "bert-large"}, {"WEFT_SEARCH_MIN_SCORE": "-1"}],
    ids=["not-int", "weight-above-one", "k-above-max", "floor-above-ceiling", "unknown-model", "negative"],
)
def test_bad_settings_are_rejected(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="WEFT_SEARCH_"):
        RetrievalSettings.from_env(env)
