"""Search filters (tags, source) and the boolean masks over an index's tools that apply them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from shared.search.document import ToolDocument

__all__ = ["FilterFields", "FilterMasks", "SearchFilters"]


@dataclass(frozen=True)
class SearchFilters:
    """Restricts a search; an empty field does not restrict."""

    tags: frozenset[str] = frozenset()
    """Keep tools that have at least one of these tags."""
    sources: frozenset[str] = frozenset()
    """Keep tools whose source is one of these."""

    def accepts(self, doc: ToolDocument) -> bool:
        """Whether ``doc`` passes the filters."""
        if self.tags and not (self.tags & doc.tags):
            return False
        return not (self.sources and doc.source not in self.sources)


FilterFields = Callable[[], tuple[Sequence[frozenset[str]], Sequence[str]]]
"""Each tool's tags and source, in index order (read when the first filtered search needs them)."""


class FilterMasks:
    """Boolean masks over the documents for each filter seen (few distinct filters exist in practice)."""

    def __init__(self, fields: FilterFields) -> None:
        self._fields = fields
        self._loaded: tuple[Sequence[frozenset[str]], Sequence[str]] | None = None
        self._masks: dict[SearchFilters, np.ndarray] = {}

    @classmethod
    def of(cls, docs: Sequence[ToolDocument]) -> FilterMasks:
        return cls(lambda: ([d.tags for d in docs], [d.source for d in docs]))

    def get(self, filters: SearchFilters | None) -> np.ndarray | None:
        if filters is None or (not filters.tags and not filters.sources):
            return None
        mask = self._masks.get(filters)
        if mask is None:
            if self._loaded is None:
                self._loaded = self._fields()
            tags, sources = self._loaded
            mask = np.fromiter(
                ((not filters.tags or bool(filters.tags & t)) and (not filters.sources or s in filters.sources)
                 for t, s in zip(tags, sources, strict=True)),
                dtype=bool, count=len(sources))
            if len(self._masks) >= 64:
                self._masks.clear()
            self._masks[filters] = mask
        return mask
