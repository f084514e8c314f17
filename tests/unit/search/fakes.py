"""Fakes for tool-search tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shared.search.embedding import Encoder


class CountingEncoder:
    """A real encoder that records every text it is asked to embed (a fake, not a mock)."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.texts: list[str] = []

    @property
    def cache_key(self) -> str:
        return self.inner.cache_key

    @property
    def dim(self) -> int:
        return self.inner.dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        return self.inner.encode(texts)
