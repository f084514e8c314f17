"""all-MiniLM-L6-v2 on ONNX Runtime: the packaged weights, re-expressed as an ONNX graph built in memory.

ONNX Runtime pre-packs each weight matrix once when the session is created; numpy's BLAS re-packs it on every
matrix product. For a short query (10-15 tokens) that packing is most of the work, so the same forward pass takes
about 6 ms here against about 10 ms in numpy on one thread (``benchmarks/retrieval_speed.py``), and large batches
are faster than torch as well. The vectors are the numpy encoder's to within 1e-6 (the unit tests hold all three
implementations together), so both share one embedding-cache key.

No ``.onnx`` file is shipped or exported: :func:`minilm_graph` writes the 6 BERT layers as standard ONNX operators
(opset 17) over the tensors of the packaged ``model.safetensors``; the weights reach the session as external
initializers, so the 90 MB of them are never serialised into a protobuf. The serialised graph (14 KB) is saved for
later processes (:mod:`shared.search.onnx_graphs`), keyed by this code and the weights' shapes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from shared.cache_folders import code_key
from shared.search.embedding import minilm
from shared.search.embedding.minilm import HEAD_DIM, HEADS, HIDDEN, LN_EPS, MASKED, MiniLmWeights, PackagedMiniLm
from shared.search.onnx_graphs import graph_saved, session_over_saved_graph

_CODE_KEY = code_key(__file__, minilm.__file__)

# Imported with the app, before it serves requests, unless a saved graph spares building one: importing onnx
# initialises protobuf and ml_dtypes while holding the GIL for about 0.6 s, which a search index built later (for the
# first search, or warming up in the background) would otherwise impose on every request in flight
# (benchmarks/first_search.py). Loading the model stays lazy.
try:
    import onnxruntime  # noqa: F401

    if not graph_saved("minilm", _CODE_KEY):
        import onnx  # noqa: F401
except ImportError:  # the numpy encoder serves then
    pass

__all__ = ["OnnxMiniLmEncoder", "minilm_graph", "minilm_initializers", "onnx_runtime_available"]

logger = logging.getLogger(__name__)

_OPSET = 17
_IR_VERSION = 8  # ONNX Runtime 1.30 reads IR versions up to 13; the onnx package writes newer ones by default


def onnx_runtime_available() -> bool:
    """Whether ``onnxruntime`` and ``onnx`` (to build the graph) are installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


class _GraphBuilder:
    """Appends nodes with generated output names; weights become external initializers, small constants inline."""

    def __init__(self) -> None:
        from onnx import TensorProto, helper, numpy_helper

        self._helper, self._numpy_helper, self._tensor_proto = helper, numpy_helper, TensorProto
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.external: dict[str, np.ndarray] = {}
        self._count = 0

    def op(self, op_type: str, *inputs: str, **attributes: Any) -> str:
        self._count += 1
        output = f"{op_type.lower()}_{self._count}"
        self.nodes.append(self._helper.make_node(op_type, list(inputs), [output], **attributes))
        return output

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self._numpy_helper.from_array(np.require(value, requirements="C"), name))
        return name

    def weight(self, name: str, value: np.ndarray) -> str:
        """A large tensor handed to the session as an external initializer (declared here, data supplied later)."""
        proto = self._tensor_proto()
        proto.name = name
        proto.data_type = self._tensor_proto.FLOAT
        proto.dims.extend(value.shape)
        proto.data_location = self._tensor_proto.EXTERNAL
        location = proto.external_data.add()
        location.key, location.value = "location", "supplied-by-session-options"
        self.initializers.append(proto)
        self.external[name] = np.require(value, dtype=np.float32, requirements="C")
        return name

    def layer_norm(self, x: str, gain: str, bias: str) -> str:
        return self.op("LayerNormalization", x, gain, bias, axis=-1, epsilon=float(LN_EPS))

    def dense(self, x: str, weight: str, bias: str) -> str:
        return self.op("Add", self.op("MatMul", x, weight), bias)


_LAYER_WEIGHTS = ("qkv_w", "qkv_b", "ao_w", "ao_b", "ln1_g", "ln1_b", "in_w", "in_b", "out_w", "out_b", "ln2_g",
                  "ln2_b")


def minilm_initializers(weights: MiniLmWeights) -> dict[str, np.ndarray]:
    """The weight arrays :func:`minilm_graph`'s model takes as external initializers, by name."""
    named = {"word": weights.word, "position": weights.position, "token_type": weights.token_type,
             "ln_gain": weights.ln[0], "ln_bias": weights.ln[1]}
    for n, layer in enumerate(weights.layers):
        named.update((f"l{n}_{name}", value) for name, value in zip(_LAYER_WEIGHTS, layer, strict=True))
    return {name: np.require(value, dtype=np.float32, requirements="C") for name, value in named.items()}


def minilm_graph(weights: MiniLmWeights) -> tuple[Any, dict[str, np.ndarray]]:
    """The BERT encoder as an ONNX model, and the weight arrays to pass as its external initializers.

    Inputs: ``ids`` (int64, batch x length), ``positions`` (int64, length: 0..length-1) and ``attention_bias``
    (float32, batch x 1 x 1 x length: 0 for a token, a large negative number for padding). Output: ``hidden``, the
    last layer's states (batch x length x 384); pooling happens in numpy.
    """
    from onnx import TensorProto, helper

    g = _GraphBuilder()
    w = minilm_initializers(weights)
    x = g.op("Add", g.op("Gather", g.weight("word", w["word"]), "ids"),
             g.op("Gather", g.weight("position", w["position"]), "positions"))
    x = g.op("Add", x, g.weight("token_type", w["token_type"]))
    x = g.layer_norm(x, g.weight("ln_gain", w["ln_gain"]), g.weight("ln_bias", w["ln_bias"]))
    split_heads = g.constant("split_heads", np.array([0, 0, 3, HEADS, HEAD_DIM], np.int64))
    merge_heads = g.constant("merge_heads", np.array([0, 0, HIDDEN], np.int64))
    scale = g.constant("scale", np.array(1.0 / np.sqrt(HEAD_DIM), np.float32))
    half = g.constant("half", np.array(0.5, np.float32))
    one = g.constant("one", np.array(1.0, np.float32))
    inv_sqrt2 = g.constant("inv_sqrt2", np.array(1.0 / np.sqrt(2.0), np.float32))
    which = [g.constant(f"part_{i}", np.array(i, np.int64)) for i in range(3)]
    for n in range(len(weights.layers)):
        qkv_w, qkv_b, ao_w, ao_b, ln1_g, ln1_b, in_w, in_b, out_w, out_b, ln2_g, ln2_b = (
            g.weight(f"l{n}_{name}", w[f"l{n}_{name}"]) for name in _LAYER_WEIGHTS)
        # (batch, length, 3*384) -> (3, batch, heads, length, head_dim), then query / key / value.
        qkv = g.op("Transpose", g.op("Reshape", g.dense(x, qkv_w, qkv_b), split_heads), perm=[2, 0, 3, 1, 4])
        query, key, value = (g.op("Gather", qkv, part, axis=0) for part in which)
        scores = g.op("Add", g.op("MatMul", g.op("Mul", query, scale), g.op("Transpose", key, perm=[0, 1, 3, 2])),
                      "attention_bias")
        context = g.op("MatMul", g.op("Softmax", scores, axis=-1), value)
        context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), merge_heads)
        x = g.layer_norm(g.op("Add", x, g.dense(context, ao_w, ao_b)), ln1_g, ln1_b)
        inner = g.dense(x, in_w, in_b)
        gelu = g.op("Mul", g.op("Mul", inner, half), g.op("Add", g.op("Erf", g.op("Mul", inner, inv_sqrt2)), one))
        x = g.layer_norm(g.op("Add", x, g.dense(gelu, out_w, out_b)), ln2_g, ln2_b)
    g.nodes[-1].output[0] = "hidden"
    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "length"]),
            helper.make_tensor_value_info("positions", TensorProto.INT64, ["length"]),
            helper.make_tensor_value_info("attention_bias", TensorProto.FLOAT, ["batch", 1, 1, "length"]),
        ],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "length", HIDDEN])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)], ir_version=_IR_VERSION)
    return model, g.external


class OnnxMiniLmEncoder(PackagedMiniLm):
    """The BERT layers on ONNX Runtime's CPU provider.

    ``threads`` is the session's intra-op thread count: 1 for queries served next to other work (the default), every
    core for a one-off bulk embedding of a large catalog. ``memory_arena`` keeps ONNX Runtime's allocations for
    reuse: right for the small tensors of queries; off for bulk embedding, where the arena would keep the largest
    batch's activations (hundreds of MB) for the life of the process. Sessions are thread-safe; concurrent queries
    share one.
    """

    def __init__(
        self,
        *,
        model_dir: Path | None = None,
        max_tokens: int = 256,
        batch_size: int = 32,
        threads: int = 1,
        memory_arena: bool = True,
        blas_threads: int | None = 1,
    ) -> None:
        super().__init__(model_dir=model_dir, max_tokens=max_tokens, batch_size=batch_size, blas_threads=blas_threads)
        self._threads = threads
        self._memory_arena = memory_arena

    @property
    def threads(self) -> int:
        """ONNX Runtime intra-op threads."""
        return self._threads

    def _load_layers(self, model_dir: Path) -> Any:
        weights = MiniLmWeights(model_dir)
        external = minilm_initializers(weights)
        shapes = repr(sorted((name, array.shape) for name, array in external.items())).encode()
        return session_over_saved_graph("minilm", f"{_CODE_KEY}-{hashlib.sha256(shapes).hexdigest()[:16]}",
                                        lambda: minilm_graph(weights)[0],
                                        lambda graph: self._session(graph, external))

    def _session(self, graph: bytes, external: dict[str, np.ndarray]) -> Any:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        options.enable_cpu_mem_arena = self._memory_arena
        # Idle pool threads sleep instead of spinning: the machine is shared with the Functions host and activities.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        names = list(external)
        options.add_external_initializers(names, [onnxruntime.OrtValue.ortvalue_from_numpy(external[n]) for n in names])
        return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def _hidden_states(self, layers: Any, token_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        bias = ((np.float32(1.0) - mask) * MASKED)[:, None, None, :]
        positions = np.arange(token_ids.shape[1], dtype=np.int64)
        return layers.run(["hidden"], {"ids": token_ids, "positions": positions, "attention_bias": bias})[0]

