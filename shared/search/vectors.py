"""Tool vectors for cosine scoring: exact float32 rows, and an int8 copy that pre-filters large catalogs exactly.

A query against 100k tools reads a 100k x 384 float32 matrix (150 MB): about 9-15 ms on this machine, memory-bound
whatever the BLAS. The same product over an int8 copy of the matrix (38 MB, ONNX Runtime's ``MatMulInteger``, VNNI
on x86) takes about 2 ms. Its error is bounded per tool (Cauchy-Schwarz, below), so :meth:`VectorIndex.fusion_scores`
turns the int8 estimate into a lower and an upper bound of every tool's fused score, keeps only the tools whose upper
bound reaches the k-th best lower bound, and scores those exactly (float64, rounded to float32) from the row-major
matrix. Every tool that can be in the top k is scored exactly, so the top k (ties included) is the one exact
scoring gives; the rest get their lower bound, which stays below the k-th best score. Catalogs under
:data:`PREFILTER_MIN_TOOLS` are scored densely in float32, as before the pre-filter existed.

Quantisation: per-dimension scales ``s_j = max_i |v_ij| / 127``, codes ``c_i = round(v_i / s)``. For a query ``q``
(``q' = q * s`` quantised to ``u`` with one scale ``a``: ``q' = a (u - 128) + e``)::

    q . v_i = a (u - 128) . c_i  +  e . c_i  +  q . (v_i - s * c_i)
    |error| <= |e| |c_i| + |q| |v_i - s * c_i|

with ``|c_i|`` and ``|v_i - s * c_i|`` stored per tool. At 100k tools the bound is about 0.02 in cosine.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from shared.cache_folders import code_key
from shared.search.onnx_graphs import session_over_saved_graph

__all__ = ["PREFILTER_MIN_TOOLS", "QuantizedVectors", "VectorIndex", "kth_largest"]

logger = logging.getLogger(__name__)
_CODE_KEY = code_key(__file__)

PREFILTER_MIN_TOOLS = 20_000
"""Below this many tools the exact float32 product is as fast as the pre-filter (measured by
``benchmarks/retrieval_speed.py``: ~0.9 ms at 10k tools either way), so small catalogs score densely."""

_SLACK = np.float32(1e-4)
"""Added to every error bound: float32 rounding of the exact dot product (<= 384 * 2^-24 for unit vectors) and of
the bound arithmetic itself, with a wide margin."""


class QuantizedVectors:
    """The int8 codes of a vector matrix (transposed, ``(dim, n)``), the per-dimension scales and per-tool norms."""

    def __init__(self, codes_t: np.ndarray, scales: np.ndarray, code_norms: np.ndarray,
                 residual_norms: np.ndarray) -> None:
        dim, count = codes_t.shape
        if (codes_t.dtype != np.int8 or scales.shape != (dim,) or code_norms.shape != (count,)
                or residual_norms.shape != (count,)):
            raise ValueError("quantized vector arrays do not fit together")
        self.codes_t, self.scales = codes_t, scales.astype(np.float32, copy=False)
        self.code_norms = code_norms.astype(np.float32, copy=False)
        self.residual_norms = residual_norms.astype(np.float32, copy=False)
        # The largest per-tool norms: one error bound per query, looser than per tool but a scalar (no pass over
        # 100k tools per query), rounded up.
        self._max_code_norm = float(code_norms.max()) * (1 + 1e-6) if count else 0.0
        self._max_residual_norm = float(residual_norms.max()) * (1 + 1e-6) if count else 0.0
        self._session: Any = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, vectors: np.ndarray, chunk: int = 8192) -> QuantizedVectors:
        """Quantise ``(n, dim)`` float32 rows (in chunks: a 100k matrix needs no float64 copy of itself)."""
        count, dim = vectors.shape
        peak = np.zeros(dim, dtype=np.float32)
        for start in range(0, count, chunk):
            np.maximum(peak, np.abs(vectors[start:start + chunk]).max(axis=0), out=peak)
        scales = np.where(peak > 0, peak / np.float32(127.0), np.float32(1.0)).astype(np.float32)
        codes_t = np.empty((dim, count), dtype=np.int8)
        code_norms = np.empty(count, dtype=np.float32)
        residual_norms = np.empty(count, dtype=np.float32)
        for start in range(0, count, chunk):
            rows = np.asarray(vectors[start:start + chunk], dtype=np.float64)
            codes = np.clip(np.rint(rows / scales), -127, 127)
            codes_t[:, start:start + len(rows)] = codes.T.astype(np.int8)
            code_norms[start:start + len(rows)] = np.linalg.norm(codes, axis=1)
            residual = np.linalg.norm(rows - codes * scales, axis=1)
            residual_norms[start:start + len(rows)] = residual * (1 + 1e-6)  # rounded up: it is a bound
        return cls(codes_t, scales, code_norms, residual_norms)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays to save (see :meth:`from_arrays`)."""
        return {"q_codes_t": self.codes_t, "q_scales": self.scales, "q_code_norms": self.code_norms,
                "q_residual_norms": self.residual_norms}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> QuantizedVectors:
        """The quantisation saved by :meth:`arrays` (may be memory-mapped); ``ValueError`` if the arrays disagree."""
        return cls(arrays["q_codes_t"], arrays["q_scales"], arrays["q_code_norms"], arrays["q_residual_norms"])

    def _runner(self) -> Any:
        """An ONNX Runtime session multiplying a uint8 query block by the codes (built once, on first use)."""
        with self._lock:
            if self._session is None:
                self._session = _matmul_integer_session(self.codes_t)
            return self._session

    def scan(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The int8 products of unit query rows ``(m, dim)``: int32 ``(m, n)``, each row's step (cosine estimate =
        product * step) and each row's error bound over every tool (``(m,)`` each)."""
        scaled = queries.astype(np.float64) * self.scales
        step = np.abs(scaled).max(axis=1) / 127.0
        step = np.where(step > 0, step, 1.0)
        levels = np.rint(scaled / step[:, None])
        error_norms = np.linalg.norm(scaled - levels * step[:, None], axis=1)
        query_norms = np.linalg.norm(queries.astype(np.float64), axis=1)
        uint8 = (levels + 128).astype(np.uint8)
        runner = self._runner()
        if runner is None:
            products = (uint8.astype(np.int32) - 128) @ self.codes_t.astype(np.int32)
        else:
            products = runner.run(["y"], {"a": uint8})[0]
        bounds = error_norms * self._max_code_norm + query_norms * self._max_residual_norm + float(_SLACK)
        return products, step, bounds

    def estimate(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Estimated cosines ``(m, n)`` of unit query rows ``(m, dim)`` and per-tool error bounds ``(m, n)`` (tighter
        than :meth:`scan`'s one per query; for tests and analysis)."""
        products, step, _ = self.scan(queries)
        scaled = queries.astype(np.float64) * self.scales
        levels = np.rint(scaled / step[:, None])
        error_norms = np.linalg.norm(scaled - levels * step[:, None], axis=1).astype(np.float32)
        query_norms = np.linalg.norm(queries, axis=1).astype(np.float32)
        bounds = self.code_norms[None, :] * error_norms[:, None]
        bounds += self.residual_norms[None, :] * query_norms[:, None]
        bounds += _SLACK
        return (products * step[:, None]).astype(np.float32), bounds


def _matmul_integer_session(codes_t: np.ndarray) -> Any:
    """ONNX Runtime's int8 matrix product over ``codes_t`` (one thread), or ``None`` without ONNX Runtime."""
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        logger.warning("onnxruntime is not installed: the int8 vector pre-filter runs in numpy (slow)")
        return None
    import onnxruntime

    dim, count = codes_t.shape
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    data = np.require(codes_t, dtype=np.int8, requirements="C")
    options.add_external_initializers(["codes"], [onnxruntime.OrtValue.ortvalue_from_numpy(data)])
    return session_over_saved_graph(
        "int8-cosines", f"{_CODE_KEY}-{dim}x{count}", lambda: _matmul_integer_graph(dim, count),
        lambda graph: onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"]))


def _matmul_integer_graph(dim: int, count: int) -> Any:
    from onnx import TensorProto, helper

    codes = TensorProto()
    codes.name, codes.data_type = "codes", TensorProto.INT8
    codes.dims.extend((dim, count))
    codes.data_location = TensorProto.EXTERNAL
    location = codes.external_data.add()
    location.key, location.value = "location", "supplied-by-session-options"
    zero = helper.make_tensor("zero", TensorProto.UINT8, [], [128])
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "codes", "zero"], ["y"])], "int8-cosines",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, ["m", dim])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, ["m", count])], [codes, zero])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _calibrate(cosines: np.ndarray, floor: np.float32, span: np.float32) -> np.ndarray:
    out = cosines - floor
    out /= span
    return np.clip(out, 0.0, 1.0, out=out)


def _cosines64(rows: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``queries @ rows.T`` computed in float64, rounded to float32."""
    return np.dot(np.asarray(queries, dtype=np.float64), np.asarray(rows, dtype=np.float64).T).astype(np.float32)


def kth_largest(values: np.ndarray, k: int, block: int = 64) -> np.float32:
    """The k-th largest of ``values`` (``k <= values.size``), partitioning only the values that can be it.

    The k-th largest of the maxima of blocks of ``block`` values is at most the k-th largest value (k blocks each
    hold a value at least that large), so only the values at or above it need partitioning: usually a few dozen
    instead of 100k (a full partition costs ~0.4 ms there).
    """
    blocks = values.size // block
    if blocks >= 4 * k:
        maxima = values[: blocks * block].reshape(blocks, block).max(axis=1)
        values = values[values >= -np.partition(-maxima, k - 1)[k - 1]]
    # Partitioning the negated values for the k-th smallest: for the k-th largest directly numpy is ~40x slower
    # when most values tie (at 0).
    return -np.partition(-values, k - 1)[k - 1]


class VectorIndex:
    """Unit tool vectors, row-major ``(n, dim)`` float32, with an optional int8 pre-filter (see the module doc).

    ``quantized`` is built on demand for catalogs of at least ``prefilter_min`` tools (default
    :data:`PREFILTER_MIN_TOOLS`), or passed in (memory-mapped from a saved index); ``prefilter_min=0`` forces the
    pre-filter, a huge value disables it.

    Tools the pre-filter lets through are scored in float64 and rounded to float32: BLAS float32 products round
    differently depending on a row's position in the block (so a tool scored alone could differ in the last bit
    from the same tool in a full product), float64 rounded to float32 does not in practice. ``float64=True`` makes
    :meth:`cosines` (and so the dense path) compute the same way: the reference the pre-filter is checked against.
    """

    def __init__(self, vectors: np.ndarray, quantized: QuantizedVectors | None = None, *,
                 prefilter_min: int | None = None, float64: bool = False) -> None:
        if vectors.ndim != 2:
            raise ValueError("vectors must be a (tools, dim) matrix")
        self.vectors = vectors
        self._quantized = quantized
        self._transposed: np.ndarray | None = None
        self._float64 = float64
        self._build_lock = threading.Lock()
        self._prefilter_min = PREFILTER_MIN_TOOLS if prefilter_min is None else prefilter_min
        if quantized is not None and quantized.codes_t.shape != (vectors.shape[1], vectors.shape[0]):
            raise ValueError("the quantized vectors do not match the float vectors")

    @property
    def count(self) -> int:
        """Number of tools."""
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        """Vector size."""
        return int(self.vectors.shape[1])

    @property
    def prefiltered(self) -> bool:
        """Whether :meth:`fusion_scores` uses the int8 pre-filter."""
        return self.count >= self._prefilter_min and self.count > 0

    @property
    def quantized(self) -> QuantizedVectors | None:
        """The int8 copy (built on first use if the catalog is large enough to need it)."""
        if self._quantized is None and self.prefiltered:
            with self._build_lock:  # concurrent first searches build it once (~1 s at 100k tools)
                if self._quantized is None:
                    self._quantized = QuantizedVectors.of(self.vectors)
        return self._quantized

    def cosines(self, queries: np.ndarray) -> np.ndarray:
        """Exact cosines ``(m, n)`` of unit query rows ``(m, dim)`` against every tool."""
        if self._float64:
            return np.hstack([_cosines64(self.vectors[start:start + 8192], queries)
                              for start in range(0, self.count, 8192)]) if self.count else queries @ self.vectors.T
        if not self.prefiltered:
            return queries @ self._dense_transposed()
        return np.dot(self.vectors, queries.T).T

    def cosines_at(self, query: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Exact cosines of one query vector against the tools at ``positions`` (computed as :meth:`cosines` would)."""
        if self._float64 or self.prefiltered:
            return _cosines64(self.vectors[positions], query[None])[0]
        return query @ self._dense_transposed()[:, positions]

    def _dense_transposed(self) -> np.ndarray:
        # A catalog small enough to score densely gets a transposed copy: a (queries x 384) @ (384 x tools) product
        # over it is ~4x faster at 10k tools than against the row-major matrix (OpenBLAS, one thread).
        if self._transposed is None:
            self._transposed = np.ascontiguousarray(self.vectors.T)
        return self._transposed

    def fusion_scores(self, queries: np.ndarray, bm25: np.ndarray, *, floor: float, span: float, bm25_weight: float,
                      embedding_weight: float, k: int, mask: np.ndarray | None = None) -> np.ndarray:
        """Calibrated embedding scores ``(m, n)`` for fusing with ``bm25`` (``(m, n)``, one row per query).

        ``clip((cos - floor) / span, 0, 1)``, exact for every tool that can be among the ``k`` best (within
        ``mask``) of any row of ``bm25_weight * bm25 + embedding_weight * scores``; every other tool gets a lower
        bound of its score that stays below the k-th best. Without the pre-filter all scores are exact. ``bm25``
        must be non-negative (BM25 scores are).
        """
        f_floor, f_span = np.float32(floor), np.float32(span)
        quantized = self.quantized if self.prefiltered and k > 0 and not self._float64 else None
        if quantized is None:
            return _calibrate(self.cosines(queries), f_floor, f_span)
        w_bm25, w_emb = np.float32(bm25_weight), np.float32(embedding_weight)
        products, steps, bounds = quantized.scan(queries)
        # Calibrated bounds straight from the int32 products: clip((product * step -+ bound - floor) / span, 0, 1).
        # They need not round as the exact scores do (the error bound's slack covers float32 rounding).
        lower = np.multiply(products, (steps / span)[:, None], dtype=np.float32)
        lower -= ((bounds + floor) / span).astype(np.float32)[:, None]
        np.clip(lower, 0.0, 1.0, out=lower)
        pool = np.flatnonzero(mask) if mask is not None else None
        keep = np.zeros(self.count, dtype=bool)
        for row in range(len(queries)):
            fused_lower = w_bm25 * bm25[row] + w_emb * lower[row]
            if pool is not None:
                fused_lower = fused_lower[pool]
            if fused_lower.size <= k:
                threshold, near = np.float32(-np.inf), np.arange(fused_lower.size)
            else:
                # A fused upper bound exceeds its lower bound by at most w_emb * 2 * bound / span (clipping only
                # narrows the gap), so only tools within that reach of the threshold need their upper bound.
                threshold = kth_largest(fused_lower, k)
                reach = np.float32(embedding_weight * 2.0 * float(bounds[row]) / span * 1.001 + 1e-6)
                near = np.flatnonzero(fused_lower >= threshold - reach)
            near = pool[near] if pool is not None else near
            upper = np.clip(products[row, near] * np.float32(steps[row] / span)
                            + np.float32((bounds[row] - floor) / span), 0.0, 1.0)
            # Where both bounds clip to 0 (or 1) the lower bound is already the exact score.
            chosen = (w_bm25 * bm25[row, near] + w_emb * upper >= threshold) & (upper > lower[row, near])
            keep[near[chosen]] = True
        exact = np.flatnonzero(keep)
        lower[:, exact] = _calibrate(_cosines64(self.vectors[exact], queries), f_floor, f_span)
        return lower
