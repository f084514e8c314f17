"""BM25: identifier-aware tokenisation, the sparse index's scores and their calibration."""

from __future__ import annotations

import numpy as np
import pytest

from shared.search.bm25 import Bm25Index, stem, tokenize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("get_weather_forecast", ["get", "weath", "forecast"]),
        ("getWeatherForecast", ["get", "weath", "forecast"]),
        ("weather.get-forecast", ["weath", "get", "forecast"]),
        ("HTTPServerError", ["http", "serv", "error"]),
        ("s3_CreateBucket", ["s3", "creat", "bucket"]),
        ("Convert 100 USD to EUR, please!", ["convert", "100", "usd", "eur"]),
        ("the and of to", []),
    ],
    ids=["snake", "camel", "dotted-kebab", "acronym", "mixed", "prose-with-number", "stopwords-only"],
)
def test_tokenize_splits_identifiers_and_drops_stopwords(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


@pytest.mark.parametrize(
    "forms",
    [("create", "creates", "created", "creating"), ("delete", "deletes", "deleted", "deleting"),
     ("bucket", "buckets"), ("policy", "policies"), ("list", "lists", "listing")],
    ids=["create", "delete", "plural", "ies", "ing"],
)
def test_stem_maps_inflections_together(forms: tuple[str, ...]) -> None:
    assert len({stem(f) for f in forms}) == 1


def bags(*docs: str) -> list[list[tuple[str, float]]]:
    return [[(t, 1.0) for t in tokenize(d)] for d in docs]


def test_document_with_the_query_terms_ranks_first() -> None:
    index = Bm25Index.build(bags("send an email", "get the weather", "convert currency", "weather forecast email"))
    raw, _ = index.scores(tokenize("weather"))
    assert raw[1] > 0 and raw[3] > 0 and raw[0] == 0 and raw[2] == 0
    assert int(np.argmax(raw)) == 1  # the shorter document wins the tie on term frequency


def test_rare_terms_weigh_more_than_common_ones() -> None:
    index = Bm25Index.build(bags("get user", "get group", "get role", "delete user"))
    raw, _ = index.scores(tokenize("delete get"))
    assert raw[3] > raw[0]  # "delete" (1 doc) outweighs "get" (3 docs)


def test_fraction_is_zero_without_overlap_and_at_most_one() -> None:
    index = Bm25Index.build(bags("send an email", "book a flight", "book a flight book flight flight"))
    _, fraction = index.scores(tokenize("book flight"))
    assert fraction[0] == 0.0
    assert 0.0 < fraction[1] < fraction[2] <= 1.0


def test_unknown_words_neither_match_nor_dilute() -> None:
    index = Bm25Index.build(bags("weather for a city", "send email"))
    _, with_city = index.scores(tokenize("weather Reykjavik"))
    _, without = index.scores(tokenize("weather"))
    assert with_city[0] == pytest.approx(without[0])


@pytest.mark.parametrize("query", ["", "the of and", "zzzz qqqq"], ids=["empty", "stopwords", "unknown"])
def test_queries_without_known_terms_score_zero(query: str) -> None:
    index = Bm25Index.build(bags("send email", "get weather"))
    raw, fraction = index.scores(tokenize(query))
    assert not raw.any() and not fraction.any()


def test_matched_terms_lists_the_query_stems_in_the_document() -> None:
    index = Bm25Index.build(bags("book a flight ticket", "convert currency"))
    assert index.matched_terms(0, tokenize("book flights and convert")) == ["book", "flight"]
    assert index.matched_terms(1, tokenize("book flights and convert")) == ["convert"]


def test_weighted_terms_count_as_fractional_frequencies() -> None:
    index = Bm25Index.build([[("alpha", 3.0), ("beta", 1.0)], [("alpha", 1.0), ("beta", 3.0)]])
    raw, _ = index.scores(["alpha"])
    assert raw[0] > raw[1]


def test_empty_index_returns_no_scores() -> None:
    index = Bm25Index.build([])
    assert index.size == 0
    assert index.scores(["anything"])[0].shape == (0,)
