"""The process-wide encoders: one for queries (one thread) and one for bulk embedding (every core)."""

from __future__ import annotations

import importlib.util
import os
import threading

from shared.search.embedding.minilm import Encoder, MiniLmEncoder, PackagedMiniLm, SentenceTransformerEncoder
from shared.search.embedding.onnx_encoder import OnnxMiniLmEncoder, onnx_runtime_available

__all__ = ["bulk_encoder", "shared_encoder"]

_SHARED: dict[str, PackagedMiniLm] = {}
_BULK: dict[str, Encoder] = {}
_SHARED_LOCK = threading.Lock()


def shared_encoder(max_tokens: int = 256) -> PackagedMiniLm:
    """The process-wide query encoder for ``max_tokens`` (created on first call, loaded on first use).

    :class:`~shared.search.embedding.onnx_encoder.OnnxMiniLmEncoder` on one thread when ONNX Runtime is installed
    (the fastest), else the numpy :class:`MiniLmEncoder`. Every retriever built without an explicit encoder uses
    this one, so building many small catalogs in one process loads the weights once.
    """
    key = str(max_tokens)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = (
                OnnxMiniLmEncoder(max_tokens=max_tokens) if onnx_runtime_available()
                else MiniLmEncoder(max_tokens=max_tokens)
            )
        return _SHARED[key]


def bulk_encoder(max_tokens: int = 256) -> Encoder | None:
    """The process-wide encoder using every core, for embedding many texts at once.

    ONNX Runtime with one thread per core when installed, else sentence-transformers (torch); ``None`` when neither
    is (callers then stay on the query encoder).
    """
    key = str(max_tokens)
    with _SHARED_LOCK:
        if key not in _BULK:
            cores = os.cpu_count() or 1
            if onnx_runtime_available():
                _BULK[key] = OnnxMiniLmEncoder(max_tokens=max_tokens, threads=cores, memory_arena=False)
            elif importlib.util.find_spec("sentence_transformers") is not None:
                _BULK[key] = SentenceTransformerEncoder(max_tokens=max_tokens, threads=cores)
            else:
                return None
        return _BULK[key]
