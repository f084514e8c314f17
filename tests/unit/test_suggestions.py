"""Did-you-mean among many names: a bounded number of comparisons, the same answers as difflib among few."""

from __future__ import annotations

import difflib

import pytest

from shared import suggestions
from shared.suggestions import MAX_CANDIDATES, MAX_NAME_CHARS, NameIndex, close_matches

MANY = [f"{prefix}_{i:05d}_get" for prefix in ("tool", "mail", "weather") for i in range(40_000)]
FEW = ["get_weather", "get_time", "convert_units", "add", "total", "echo", "send_mail"]


def test_public_api_is_declared() -> None:
    assert set(suggestions.__all__) == {"MAX_CANDIDATES", "MAX_NAME_CHARS", "NameIndex", "close_matches"}


@pytest.mark.parametrize("word", ["tool_12345_get", "xool_12345_get", "tool_12345_gte", "weather", "", "z" * 200],
                         ids=["exact", "first-char", "last-chars", "short", "empty", "long"])
def test_a_word_is_compared_with_at_most_max_candidates_names(word: str) -> None:
    chosen = NameIndex(MANY).candidates(word)
    assert 0 < len(chosen) <= MAX_CANDIDATES == 500
    assert len(set(chosen)) == len(chosen) and set(chosen) <= set(MANY)


@pytest.mark.parametrize(("word", "expected"), [
    pytest.param("tool_12345_gte", "tool_12345_get", id="typo-at-the-end"),
    pytest.param("xool_12345_get", "tool_12345_get", id="typo-at-the-start"),
    pytest.param("mail_12345get", "mail_12345_get", id="missing-character"),
    pytest.param("wether_30000_get", "weather_30000_get", id="missing-character-early"),
])
def test_typos_at_either_end_are_found_among_many(word: str, expected: str) -> None:
    assert NameIndex(MANY).close_matches(word, n=1) == [expected]


@pytest.mark.parametrize("word", ["get_wether", "ad", "totl", "send_mial", "nothing_like_it", "echo"])
def test_among_few_names_the_answer_is_difflibs(word: str) -> None:
    assert close_matches(word, FEW) == difflib.get_close_matches(word, FEW, n=3)


def test_a_smaller_bound_compares_with_fewer_names() -> None:
    index = NameIndex([f"n{i:03d}" for i in range(300)], max_candidates=40)
    assert len(index.candidates("n150")) <= 40
    assert index.close_matches("n150_", n=1) == ["n150"]


def test_long_words_and_names_are_not_compared() -> None:
    """A comparison costs up to the product of the lengths: 500 keys of 100 kB would take minutes."""
    long_name = "k" * (MAX_NAME_CHARS + 1)
    assert MAX_NAME_CHARS == 64
    assert close_matches(long_name[:-1] + "x", [long_name, "k" * MAX_NAME_CHARS]) == []  # the word is too long
    assert close_matches("k" * MAX_NAME_CHARS, [long_name]) == []  # the name is too long
    assert close_matches("k" * (MAX_NAME_CHARS - 1), [long_name, "k" * MAX_NAME_CHARS]) == ["k" * MAX_NAME_CHARS]
