"""Sentence embeddings (all-MiniLM-L6-v2, packaged weights) and their content-addressed cache."""

from shared.search.embedding.cache import BlobContainerStore, CacheStore, EmbeddingCache, LocalFolderStore, text_key
from shared.search.embedding.encoders import bulk_encoder, shared_encoder
from shared.search.embedding.minilm import (
    DEFAULT_MODEL_ID,
    Encoder,
    MiniLmEncoder,
    PackagedMiniLm,
    SentenceTransformerEncoder,
)
from shared.search.embedding.onnx_encoder import OnnxMiniLmEncoder, onnx_runtime_available

__all__ = [
    "DEFAULT_MODEL_ID",
    "BlobContainerStore",
    "CacheStore",
    "EmbeddingCache",
    "Encoder",
    "LocalFolderStore",
    "MiniLmEncoder",
    "OnnxMiniLmEncoder",
    "PackagedMiniLm",
    "SentenceTransformerEncoder",
    "bulk_encoder",
    "onnx_runtime_available",
    "shared_encoder",
    "text_key",
]
