"""Did-you-mean suggestions among many names, at a bounded cost.

:func:`difflib.get_close_matches` compares a word with every candidate (about 20 µs each: two seconds against a
catalog of 100,000 tools). :class:`NameIndex` compares it only with the names nearest to it in sorted order and in
sorted order of the reversed names (a typo keeps either its prefix or its suffix), at most ``max_candidates`` of them;
when there are no more names than that it compares with all of them, exactly as ``get_close_matches`` does.

A comparison costs up to the product of the two lengths, so words and names longer than :data:`MAX_NAME_CHARS` are
left out: a did-you-mean for a 100 kB dictionary key (a tool's result, a caller's ``$ref``) is not worth seconds.
"""

from __future__ import annotations

import bisect
import difflib
from collections.abc import Iterable

__all__ = ["MAX_CANDIDATES", "MAX_NAME_CHARS", "NameIndex", "close_matches"]

MAX_CANDIDATES = 500
"""Names one suggestion compares the word with (about 10 ms)."""
MAX_NAME_CHARS = 64
"""Longest word or name compared (catalog names and step ids are at most 64 characters; 500 comparisons of 64
characters take at most about 0.25 s, of 200 characters about 2 s)."""


class NameIndex:
    """Names sorted forwards and backwards; build once, then ask :meth:`close_matches` for many words.

    Names longer than :data:`MAX_NAME_CHARS` are never suggested."""

    def __init__(self, names: Iterable[str], *, max_candidates: int = MAX_CANDIDATES) -> None:
        self._names = sorted({name for name in names if len(name) <= MAX_NAME_CHARS})
        self._max = max_candidates
        self._reversed = sorted(name[::-1] for name in self._names) if len(self._names) > max_candidates else []

    def candidates(self, word: str) -> list[str]:
        """The names ``word`` is compared with: all of them, or at most ``max_candidates`` near it."""
        if len(self._names) <= self._max:
            return self._names
        half = self._max // 2
        chosen = dict.fromkeys(_around(self._names, word, half))
        chosen.update(dict.fromkeys(name[::-1] for name in _around(self._reversed, word[::-1], self._max - half)))
        return list(chosen)

    def close_matches(self, word: str, n: int = 3, cutoff: float = 0.6) -> list[str]:
        """Up to ``n`` names close to ``word``, best first (as :func:`difflib.get_close_matches`); none for a word
        longer than :data:`MAX_NAME_CHARS`."""
        if len(word) > MAX_NAME_CHARS:
            return []
        return difflib.get_close_matches(word, self.candidates(word), n=n, cutoff=cutoff)


def close_matches(word: str, names: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """One suggestion: :meth:`NameIndex.close_matches` of a throwaway index (none built for a word too long)."""
    if len(word) > MAX_NAME_CHARS:
        return []
    return NameIndex(names).close_matches(word, n=n, cutoff=cutoff)


def _around(ordered: list[str], word: str, count: int) -> list[str]:
    """``count`` entries of ``ordered`` around where ``word`` would be inserted."""
    at = bisect.bisect_left(ordered, word)
    start = max(0, min(at - count // 2, len(ordered) - count))
    return ordered[start : start + count]
