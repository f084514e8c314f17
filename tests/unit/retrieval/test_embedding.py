"""The numpy all-MiniLM-L6-v2 encoder: unit vectors, batching that does not change results, reference parity."""

from __future__ import annotations

import numpy as np
import pytest

from shared.embedding import DEFAULT_MODEL_ID, Encoder, MiniLmEncoder, SentenceTransformerEncoder, shared_encoder

TEXTS = [
    "book a flight from Paris to London",
    "convert the price to euros",
    "get weather: Current weather conditions for a city. Parameters: city (City name)",
    "x",
]


def test_vectors_are_unit_length_float32(encoder: MiniLmEncoder) -> None:
    vectors = encoder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_batching_and_padding_do_not_change_a_vector(encoder: MiniLmEncoder) -> None:
    together = encoder.encode(TEXTS)
    alone = np.stack([encoder.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_similar_texts_are_closer_than_unrelated_ones(encoder: MiniLmEncoder) -> None:
    a, b, c = encoder.encode(["send an email to my boss", "email a message to a colleague", "triangle area"])
    assert a @ b > 0.5 > a @ c


def test_empty_input_gives_an_empty_matrix(encoder: MiniLmEncoder) -> None:
    assert encoder.encode([]).shape == (0, 384)


def test_long_text_is_truncated_not_rejected(encoder: MiniLmEncoder) -> None:
    vector = encoder.encode(["word " * 2000])
    assert vector.shape == (1, 384) and np.isfinite(vector).all()


def test_cache_key_names_model_and_truncation() -> None:
    assert MiniLmEncoder(max_tokens=128).cache_key == f"{DEFAULT_MODEL_ID}@128"
    assert MiniLmEncoder().cache_key == SentenceTransformerEncoder().cache_key


def test_loads_lazily_and_on_warm_up() -> None:
    enc = MiniLmEncoder()
    assert not enc.loaded
    enc.warm_up()
    assert enc.loaded


def test_shared_encoder_is_one_per_truncation() -> None:
    assert shared_encoder() is shared_encoder()
    assert shared_encoder(128) is not shared_encoder()


@pytest.mark.parametrize("implementation", [MiniLmEncoder, SentenceTransformerEncoder], ids=["numpy", "torch"])
def test_both_encoders_satisfy_the_protocol(implementation: type) -> None:
    assert isinstance(implementation(), Encoder)


@pytest.mark.slow
def test_numpy_forward_matches_sentence_transformers(encoder: MiniLmEncoder) -> None:
    reference = SentenceTransformerEncoder(threads=2).encode([*TEXTS, "word " * 400])
    np.testing.assert_allclose(encoder.encode([*TEXTS, "word " * 400]), reference, atol=1e-5)
