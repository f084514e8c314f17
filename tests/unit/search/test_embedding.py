"""The all-MiniLM-L6-v2 encoders: unit vectors, batching that does not change results, parity between them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.search import onnx_graphs
from shared.search.embedding import (
    DEFAULT_MODEL_ID,
    Encoder,
    MiniLmEncoder,
    PackagedMiniLm,
    SentenceTransformerEncoder,
    bulk_encoder,
    shared_encoder,
)
from shared.search.embedding.onnx_encoder import OnnxMiniLmEncoder, onnx_runtime_available

TEXTS = [
    "book a flight from Paris to London",
    "convert the price to euros",
    "get weather: Current weather conditions for a city. Parameters: city (City name)",
    "x",
]
LONG = "word " * 400


@pytest.fixture(scope="module")
def numpy_encoder() -> MiniLmEncoder:
    enc = MiniLmEncoder()
    enc.warm_up()
    return enc


@pytest.fixture(scope="module")
def onnx_encoder() -> OnnxMiniLmEncoder:
    enc = OnnxMiniLmEncoder()
    enc.warm_up()
    return enc


@pytest.fixture(params=["onnx", "numpy"])
def packaged(request: pytest.FixtureRequest) -> PackagedMiniLm:
    return request.getfixturevalue(f"{request.param}_encoder")


def test_vectors_are_unit_length_float32(packaged: PackagedMiniLm) -> None:
    vectors = packaged.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_batching_and_padding_do_not_change_a_vector(packaged: PackagedMiniLm) -> None:
    together = packaged.encode(TEXTS)
    alone = np.stack([packaged.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_similar_texts_are_closer_than_unrelated_ones(packaged: PackagedMiniLm) -> None:
    a, b, c = packaged.encode(["send an email to my boss", "email a message to a colleague", "triangle area"])
    assert a @ b > 0.5 > a @ c


def test_empty_input_gives_an_empty_matrix(packaged: PackagedMiniLm) -> None:
    assert packaged.encode([]).shape == (0, 384)


def test_long_text_is_truncated_not_rejected(packaged: PackagedMiniLm) -> None:
    vector = packaged.encode([LONG])
    assert vector.shape == (1, 384) and np.isfinite(vector).all()


@pytest.mark.slow
def test_onnx_and_numpy_forward_passes_agree(onnx_encoder: OnnxMiniLmEncoder, numpy_encoder: MiniLmEncoder) -> None:
    texts = [*TEXTS, LONG, "Résumé: naïve café ☕ — 東京"]
    np.testing.assert_allclose(onnx_encoder.encode(texts), numpy_encoder.encode(texts), atol=1e-5)


def test_cache_key_names_model_and_truncation() -> None:
    assert MiniLmEncoder(max_tokens=128).cache_key == f"{DEFAULT_MODEL_ID}@128"
    assert OnnxMiniLmEncoder(max_tokens=128).cache_key == f"{DEFAULT_MODEL_ID}@128"
    assert MiniLmEncoder().cache_key == SentenceTransformerEncoder().cache_key == OnnxMiniLmEncoder().cache_key


@pytest.mark.parametrize("implementation", [OnnxMiniLmEncoder, MiniLmEncoder], ids=["onnx", "numpy"])
def test_loads_lazily_and_on_warm_up(implementation: type[PackagedMiniLm]) -> None:
    enc = implementation()
    assert not enc.loaded
    enc.warm_up()
    assert enc.loaded


def test_shared_encoder_is_one_per_truncation_on_onnx_runtime() -> None:
    assert onnx_runtime_available()
    assert shared_encoder() is shared_encoder()
    assert shared_encoder(128) is not shared_encoder()
    assert isinstance(shared_encoder(), OnnxMiniLmEncoder) and shared_encoder().threads == 1


def test_bulk_encoder_uses_every_core() -> None:
    bulk = bulk_encoder()
    assert isinstance(bulk, OnnxMiniLmEncoder) and bulk.threads >= 1 and bulk is bulk_encoder()
    assert bulk.threads == (os.cpu_count() or 1) and bulk is not shared_encoder()


@pytest.mark.parametrize(
    "implementation", [OnnxMiniLmEncoder, MiniLmEncoder, SentenceTransformerEncoder], ids=["onnx", "numpy", "torch"]
)
def test_every_encoder_satisfies_the_protocol(implementation: type) -> None:
    assert isinstance(implementation(), Encoder)


@pytest.mark.slow
def test_packaged_forward_passes_match_sentence_transformers(packaged: PackagedMiniLm) -> None:
    reference = SentenceTransformerEncoder(threads=2).encode([*TEXTS, LONG])
    np.testing.assert_allclose(packaged.encode([*TEXTS, LONG]), reference, atol=1e-5)


@pytest.mark.slow
def test_multi_threaded_session_gives_the_same_vectors(onnx_encoder: OnnxMiniLmEncoder) -> None:
    two = OnnxMiniLmEncoder(threads=2)
    np.testing.assert_allclose(two.encode([*TEXTS, LONG]), onnx_encoder.encode([*TEXTS, LONG]), atol=1e-5)


@pytest.mark.slow
def test_tokenising_in_chunks_does_not_change_vectors(
    onnx_encoder: OnnxMiniLmEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [*TEXTS, LONG, "send an email", "y"]
    whole = onnx_encoder.encode(texts)
    monkeypatch.setattr("shared.search.embedding.minilm._TOKENIZE_CHUNK", 3)
    np.testing.assert_allclose(onnx_encoder.encode(texts), whole, atol=1e-5)


needs_onnx = pytest.mark.skipif(not onnx_runtime_available(), reason="ONNX Runtime not installed")


@needs_onnx
def test_a_saved_graph_spares_importing_onnx_in_a_later_process(onnx_encoder: OnnxMiniLmEncoder) -> None:
    onnx_encoder.encode(["saved"])  # built and saved at least once by now
    probe = ("import sys; from shared.search.embedding.onnx_encoder import OnnxMiniLmEncoder; "
             "v = OnnxMiniLmEncoder().encode(['saved']); print('onnx' in sys.modules, v.shape)")
    done = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[3], env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.stdout.split() == ["False", "(1,", "384)"], done.stderr[-2000:]


@needs_onnx
def test_a_damaged_saved_graph_is_built_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              onnx_encoder: OnnxMiniLmEncoder) -> None:
    folder = tmp_path / "graphs"
    monkeypatch.setattr(onnx_graphs, "GRAPH_DIR", folder)
    first = OnnxMiniLmEncoder().encode(["damaged"])
    (saved,) = folder.glob("minilm-*.onnx")
    saved.write_bytes(saved.read_bytes()[:999])
    np.testing.assert_allclose(OnnxMiniLmEncoder().encode(["damaged"]), first, atol=1e-6)
    assert saved.stat().st_size > 999  # saved whole again
    np.testing.assert_allclose(first, onnx_encoder.encode(["damaged"]), atol=1e-6)


@needs_onnx
def test_a_graph_folder_open_to_others_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   onnx_encoder: OnnxMiniLmEncoder) -> None:
    private = tmp_path / "own-graphs"
    monkeypatch.setattr(onnx_graphs, "GRAPH_DIR", private)
    OnnxMiniLmEncoder().encode(["open"])
    (saved,) = private.glob("minilm-*.onnx")  # the name a planted graph would need
    folder = tmp_path / "shared-graphs"
    folder.mkdir()
    folder.chmod(0o777)
    monkeypatch.setattr(onnx_graphs, "GRAPH_DIR", folder)
    planted = folder / saved.name
    planted.write_bytes(b"not a graph")
    vector = OnnxMiniLmEncoder().encode(["open"])
    np.testing.assert_allclose(vector, onnx_encoder.encode(["open"]), atol=1e-6)
    assert sorted(p.name for p in folder.iterdir()) == [planted.name]  # nothing written beside it,
    assert planted.read_bytes() == b"not a graph"  # nor over it
    assert not onnx_graphs.graph_saved("minilm", "")  # and the planted graph does not spare the onnx import


def test_saved_graphs_of_other_keys_are_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "graphs"
    folder.mkdir(mode=0o700)
    monkeypatch.setattr(onnx_graphs, "GRAPH_DIR", folder)
    for age, key in enumerate(("k1", "k2", "k3", "k4", "k5")):
        old = folder / f"g-{key}.onnx"
        old.write_bytes(b"x")
        os.utime(old, (1_000_000 + age, 1_000_000 + age))
    (folder / "other-k0.onnx").write_bytes(b"x")  # another graph's name: not this one's to prune

    class Model:
        def SerializeToString(self) -> bytes:
            return b"graph"

    assert onnx_graphs.session_over_saved_graph("g", "new", Model, lambda graph: graph) == b"graph"
    kept = sorted(p.name for p in folder.iterdir())
    assert kept == ["g-k3.onnx", "g-k4.onnx", "g-k5.onnx", "g-new.onnx", "other-k0.onnx"]
    assert onnx_graphs.GRAPHS_KEPT == 4
