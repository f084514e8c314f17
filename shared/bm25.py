"""BM25 over tool text: a tokeniser for identifiers and prose, and a sparse-matrix index.

The index stores the BM25 weight of every (document, term) pair in a CSC matrix, so a query is a sum of a few
sparse columns: on 100k tools that is well under a millisecond per query term. Scores are also returned as a
fraction of the best score the query could reach (every query term present at saturation), which is comparable
across queries and so can be thresholded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

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


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed word tokens; identifiers are split on snake_case, camelCase, dots and dashes.

    ``getWeatherForecast``, ``get_weather_forecast`` and ``weather.get-forecast`` all yield the stems of
    ``get``, ``weather`` and ``forecast``. Stopwords are dropped.
    """
    tokens: list[str] = []
    for raw in _WORD.findall(text):
        for part in _CAMEL.split(raw):
            lowered = part.lower()
            if lowered and lowered not in STOPWORDS:
                tokens.append(stem(lowered))
    return tokens


@dataclass(frozen=True)
class Bm25Params:
    """BM25 constants. ``k1`` saturates term frequency; ``b`` controls length normalisation."""

    k1: float = 1.2
    b: float = 0.75


class Bm25Index:
    """An immutable BM25 index over weighted bags of words (one bag per document).

    Build with :meth:`build`; query with :meth:`scores`. Term weights per field (for example a tool's name counting
    more than its parameter descriptions) are applied by the caller as fractional term frequencies.
    """

    def __init__(
        self,
        matrix: sparse.csc_matrix,
        vocabulary: dict[str, int],
        idf: np.ndarray,
        params: Bm25Params,
    ) -> None:
        self._matrix = matrix
        self._csr: sparse.csr_matrix | None = None
        self._vocabulary = vocabulary
        self._idf = idf
        self._params = params

    @classmethod
    def build(cls, bags: Sequence[Iterable[tuple[str, float]]], params: Bm25Params | None = None) -> Bm25Index:
        """Index documents given as iterables of ``(term, weight)`` pairs (a term may repeat)."""
        params = params or Bm25Params()
        vocabulary: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        for row, bag in enumerate(bags):
            for term, weight in bag:
                col = vocabulary.setdefault(term, len(vocabulary))
                rows.append(row)
                cols.append(col)
                vals.append(weight)
        shape = (len(bags), max(len(vocabulary), 1))
        tf = sparse.coo_matrix(
            (np.asarray(vals, dtype=np.float32), (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))),
            shape=shape,
        ).tocsr()  # duplicates are summed
        tf.sum_duplicates()
        lengths = np.asarray(tf.sum(axis=1)).ravel()
        avg_length = float(lengths.mean()) if lengths.size and lengths.mean() > 0 else 1.0
        doc_freq = np.bincount(tf.indices, minlength=shape[1]).astype(np.float64)
        n_docs = max(shape[0], 1)
        idf = np.log1p((n_docs - doc_freq + 0.5) / (doc_freq + 0.5)).astype(np.float32)
        # Per-entry BM25 weight: idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len)).
        norm = params.k1 * (1.0 - params.b + params.b * lengths / avg_length)
        row_of_entry = np.repeat(np.arange(shape[0]), np.diff(tf.indptr))
        data = tf.data.astype(np.float32)
        tf.data = (idf[tf.indices] * data * (params.k1 + 1.0) / (data + norm[row_of_entry])).astype(np.float32)
        return cls(tf.tocsc(), vocabulary, idf, params)

    @property
    def size(self) -> int:
        """Number of documents indexed."""
        return int(self._matrix.shape[0])

    def query_terms(self, tokens: Iterable[str]) -> list[str]:
        """The distinct query tokens that occur in at least one document, in first-seen order."""
        return [t for t in dict.fromkeys(tokens) if t in self._vocabulary]

    def scores(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """BM25 score of every document for a tokenised query, raw and as a fraction of the reachable maximum.

        The fraction divides by ``sum(idf(t) * (k1 + 1))`` over the distinct query tokens the index knows (words
        no tool contains, such as a city name, cannot be matched by any tool and are left out), so a query sharing
        nothing with a tool scores 0 and one whose every known word is frequent in the tool scores close to 1.
        """
        raw = np.zeros(self.size, dtype=np.float32)
        distinct = list(dict.fromkeys(tokens))
        if not distinct or self.size == 0:
            return raw, raw.copy()
        ceiling = 0.0
        for term in distinct:
            col = self._vocabulary.get(term)
            if col is None:
                continue
            ceiling += float(self._idf[col])
            start, end = self._matrix.indptr[col], self._matrix.indptr[col + 1]
            raw[self._matrix.indices[start:end]] += self._matrix.data[start:end]
        ceiling *= self._params.k1 + 1.0
        return raw, raw / np.float32(ceiling) if ceiling > 0 else raw.copy()

    def matched_terms(self, doc: int, tokens: Iterable[str]) -> list[str]:
        """The query tokens that occur in document ``doc``."""
        if self._csr is None:
            self._csr = self._matrix.tocsr()
        start, end = self._csr.indptr[doc], self._csr.indptr[doc + 1]
        present = set(self._csr.indices[start:end].tolist())
        return [t for t in dict.fromkeys(tokens) if self._vocabulary.get(t, -1) in present]
