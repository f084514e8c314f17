"""BM25 over tool text: a tokeniser for identifiers and prose, and a sparse index in plain numpy arrays.

The index stores the BM25 weight of every (document, term) pair in a compressed sparse column layout, so a query is
a sum of a few sparse columns: on 100k tools that is well under a millisecond per query term. Scores are also
returned as a fraction of the best score the query could reach (every query term present at saturation), which is
comparable across queries and so can be thresholded.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["Bm25Index", "Bm25Params", "stem", "tokenize"]

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*|[0-9]+")

STOPWORDS = frozenset(
    """a an and are as at be been but by can could do does for from had has have how i if in into is it its
    me my of on or our please so that the their them then there these this those to up us was we were what
    when where which while who will with would you your want need like should must also just some any all
    after before next finally first""".split()  # noqa: SIM905 - a word list reads better as prose
)
"""Words too common to say anything about which tool is meant."""

_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("ational", "ate"),
    ("ization", "ize"),
    ("ations", "ate"),
    ("ation", "ate"),
    ("ments", ""),
    ("ment", ""),
    ("ingly", ""),
    ("edly", ""),
    ("ies", "y"),
    ("ing", ""),
    ("ied", "y"),
    ("ers", ""),
    ("er", ""),
    ("ed", ""),
    ("es", ""),
    ("s", ""),
    ("e", ""),
)


def stem(word: str) -> str:
    """A light suffix-stripping stemmer: ``creates``/``creating``/``created``/``create`` all become ``creat``.

    Deliberately crude and symmetric: queries and documents go through the same function, so only consistency
    matters. Words of four letters or fewer, and suffix strips that would leave fewer than three letters, are kept.
    """
    if len(word) <= 4 or word.isdigit():
        return word
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: len(word) - len(suffix)] + replacement
            break
    if len(word) > 4 and word[-1] == word[-2] and word[-1] not in "lsz":
        word = word[:-1]  # "stopp(ing)" -> "stop", "plann(ed)" -> "plan"
    return word


@lru_cache(maxsize=1 << 16)
def _word_tokens(word: str) -> tuple[str, ...]:
    """Tokens of one regex word: split camelCase, lower-case, drop stopwords, stem (cached: words repeat a lot)."""
    out = []
    for part in _CAMEL.split(word):
        lowered = part.lower()
        if lowered and lowered not in STOPWORDS:
            out.append(stem(lowered))
    return tuple(out)


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed word tokens; identifiers are split on snake_case, camelCase, dots and dashes.

    ``getWeatherForecast``, ``get_weather_forecast`` and ``weather.get-forecast`` all yield the stems of
    ``get``, ``weather`` and ``forecast``. Stopwords are dropped.
    """
    return [token for word in _WORD.findall(text) for token in _word_tokens(word)]


@dataclass(frozen=True)
class Bm25Params:
    """BM25 constants. ``k1`` saturates term frequency; ``b`` controls length normalisation."""

    k1: float = 1.2
    b: float = 0.75


class Bm25Index:
    """An immutable BM25 index over weighted bags of words (one bag per document).

    Build with :meth:`build`; query with :meth:`scores`. Term weights per field (for example a tool's name counting
    more than its parameter descriptions) are applied by the caller as fractional term frequencies.

    Storage is a compressed sparse matrix of precomputed BM25 weights, kept twice in plain numpy arrays: by column
    (term -> documents, for scoring) and by row (document -> terms, for :meth:`matched_terms`). numpy alone keeps
    the import light (scipy.sparse adds about 0.5 s to a cold start).
    """

    def __init__(
        self,
        by_term: tuple[np.ndarray, np.ndarray, np.ndarray],
        by_doc: tuple[np.ndarray, np.ndarray],
        vocabulary: dict[str, int],
        idf: np.ndarray,
        params: Bm25Params,
    ) -> None:
        self._term_ptr, self._term_docs, self._term_weights = by_term
        self._doc_ptr, self._doc_terms = by_doc
        self._vocabulary = vocabulary
        self._idf = idf
        self._params = params

    @classmethod
    def build(cls, bags: Sequence[Iterable[tuple[str, float]]], params: Bm25Params | None = None) -> Bm25Index:
        """Index documents given as iterables of ``(term, weight)`` pairs (a term may repeat)."""
        params = params or Bm25Params()
        vocabulary: dict[str, int] = {}
        # Typed arrays, not lists: 100k tools have ~5M (term, weight) pairs.
        cols = array("i")
        vals = array("f")
        counts = array("q")
        for bag in bags:
            before = len(cols)
            for term, weight in bag:
                cols.append(vocabulary.setdefault(term, len(vocabulary)))
                vals.append(weight)
            counts.append(len(cols) - before)
        n_docs, n_terms = len(counts), max(len(vocabulary), 1)
        rows = np.repeat(np.arange(n_docs, dtype=np.int64), np.frombuffer(counts, dtype=np.int64))
        # Sum repeated (doc, term) pairs: sort by doc then term and add runs of equal keys.
        keys = rows * n_terms + np.frombuffer(cols, dtype=np.int32)
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        unique_keys, starts = np.unique(keys, return_index=True)
        tf = np.add.reduceat(np.frombuffer(vals, dtype=np.float32)[order], starts) if starts.size else np.zeros(0)
        doc_of = unique_keys // n_terms
        term_of = (unique_keys % n_terms).astype(np.int32)
        lengths = np.bincount(doc_of, weights=tf, minlength=n_docs)
        avg_length = float(lengths.mean()) if n_docs and lengths.mean() > 0 else 1.0
        doc_freq = np.bincount(term_of, minlength=n_terms).astype(np.float64)
        idf = np.log1p((max(n_docs, 1) - doc_freq + 0.5) / (doc_freq + 0.5)).astype(np.float32)
        # Per-entry BM25 weight: idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len)).
        norm = params.k1 * (1.0 - params.b + params.b * lengths / avg_length)
        weights = (idf[term_of] * tf * (params.k1 + 1.0) / (tf + norm[doc_of])).astype(np.float32)
        by_column = np.argsort(term_of, kind="stable")
        term_ptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(np.bincount(term_of, minlength=n_terms), out=term_ptr[1:])
        doc_ptr = np.zeros(n_docs + 1, dtype=np.int64)
        np.cumsum(np.bincount(doc_of, minlength=n_docs), out=doc_ptr[1:])
        return cls(
            (term_ptr, doc_of[by_column].astype(np.int32), weights[by_column]),
            (doc_ptr, term_of),
            vocabulary,
            idf,
            params,
        )

    def arrays(self) -> tuple[dict[str, np.ndarray], list[str]]:
        """The index as named numeric arrays and the vocabulary in column order (for :meth:`from_arrays`)."""
        terms = sorted(self._vocabulary, key=self._vocabulary.__getitem__)
        return {
            "term_ptr": self._term_ptr, "term_docs": self._term_docs, "term_weights": self._term_weights,
            "doc_ptr": self._doc_ptr, "doc_terms": self._doc_terms, "idf": self._idf,
            "params": np.array([self._params.k1, self._params.b]),
        }, terms

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], terms: Sequence[str]) -> Bm25Index:
        """The index saved by :meth:`arrays` (the arrays may be memory-mapped); ``ValueError`` if they disagree."""
        term_ptr, doc_ptr = arrays["term_ptr"], arrays["doc_ptr"]
        n_terms, n_entries = max(len(terms), 1), int(arrays["term_docs"].shape[0])
        if (term_ptr.shape != (n_terms + 1,) or arrays["idf"].shape != (n_terms,)
                or arrays["term_weights"].shape != (n_entries,) or arrays["doc_terms"].shape != (n_entries,)
                or int(term_ptr[-1]) != n_entries or int(doc_ptr[-1]) != n_entries):
            raise ValueError("BM25 arrays do not fit together")
        k1, b = (float(v) for v in arrays["params"])
        return cls(
            (term_ptr, arrays["term_docs"], arrays["term_weights"]),
            (doc_ptr, arrays["doc_terms"]),
            dict(zip(terms, range(len(terms)), strict=True)),
            arrays["idf"],
            Bm25Params(k1, b),
        )

    @property
    def size(self) -> int:
        """Number of documents indexed."""
        return len(self._doc_ptr) - 1

    def scores(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """BM25 score of every document for a tokenised query, raw and as a fraction of the reachable maximum.

        The fraction divides by ``sum(idf(t) * (k1 + 1))`` over the distinct query tokens the index knows (words
        no tool contains, such as a city name, cannot be matched by any tool and are left out), so a query sharing
        nothing with a tool scores 0 and one whose every known word is frequent in the tool scores close to 1.
        """
        raw = np.zeros(self.size, dtype=np.float32)
        ceiling = 0.0
        for term in dict.fromkeys(tokens):
            col = self._vocabulary.get(term)
            if col is None:
                continue
            ceiling += float(self._idf[col])
            start, end = self._term_ptr[col], self._term_ptr[col + 1]
            raw[self._term_docs[start:end]] += self._term_weights[start:end]
        ceiling *= self._params.k1 + 1.0
        return raw, raw / np.float32(ceiling) if ceiling > 0 else raw.copy()

    def matched_terms(self, doc: int, tokens: Iterable[str]) -> list[str]:
        """The query tokens that occur in document ``doc``."""
        present = set(self._doc_terms[self._doc_ptr[doc] : self._doc_ptr[doc + 1]].tolist())
        return [t for t in dict.fromkeys(tokens) if self._vocabulary.get(t, -1) in present]
