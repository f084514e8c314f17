"""Tool search: BM25 and MiniLM embeddings over tool documents, fused, behind one ``Retriever.search`` seam."""

from shared.search.api import SearchRequest, parse_search_request, search_tools
from shared.search.document import ToolDocument
from shared.search.retrieval import (
    Bm25Retriever,
    EmbeddingRetriever,
    HybridRetriever,
    Retriever,
    SearchFilters,
    ToolHit,
)
from shared.search.settings import RetrievalSettings

__all__ = [
    "Bm25Retriever",
    "EmbeddingRetriever",
    "HybridRetriever",
    "RetrievalSettings",
    "Retriever",
    "SearchFilters",
    "SearchRequest",
    "ToolDocument",
    "ToolHit",
    "parse_search_request",
    "search_tools",
]
