"""How error messages quote what a caller sent: cut, and lists counted past a few names."""

from __future__ import annotations

from shared.errors import LISTED_NAMES, QUOTED_CHARS, quoted, quoted_list


def test_quoted_cuts_long_values() -> None:
    assert quoted("abc") == "'abc'"
    assert quoted("x" * QUOTED_CHARS) == repr("x" * QUOTED_CHARS)
    assert quoted("x" * 100_000) == repr("x" * QUOTED_CHARS) + "…"


def test_quoted_list_lists_a_few_names_and_counts_the_rest() -> None:
    assert quoted_list([]) == ""
    assert quoted_list(["a", "b"]) == "'a', 'b'"
    exactly = [f"n{i}" for i in range(LISTED_NAMES)]
    assert quoted_list(exactly) == ", ".join(repr(n) for n in exactly)
    assert quoted_list([*exactly, "over"]).endswith("'n19', and 1 more")
    assert quoted_list(["y" * 100_000], limit=1) == repr("y" * QUOTED_CHARS) + "…"
    assert quoted_list(["a", "b", "c"], limit=1) == "'a', and 2 more"
