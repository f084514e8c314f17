"""The embedding cache: content-addressed shards (.npy + JSON, never pickle) in a folder or memory."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from shared.search.embedding.cache import EmbeddingCache, LocalFolderStore, text_key

KEY = "model@256"


def vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_text_key_is_sha256_hex() -> None:
    assert text_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize("persistent", [False, True], ids=["memory", "folder"])
def test_put_then_fetch_returns_vectors_and_marks_misses(tmp_path: Path, persistent: bool) -> None:
    cache = EmbeddingCache(KEY, LocalFolderStore(tmp_path) if persistent else None)
    v = vectors(3)
    cache.put(["a", "b", "c"], v)
    got, found = cache.fetch(["c", "zzz", "a"], 8)
    assert found.tolist() == [True, False, True]
    np.testing.assert_array_equal(got[0], v[2])
    np.testing.assert_array_equal(got[1], 0)
    assert len(cache) == 3


def test_a_new_instance_reads_what_another_wrote(tmp_path: Path) -> None:
    v = vectors(2)
    EmbeddingCache(KEY, LocalFolderStore(tmp_path)).put(["a", "b"], v)
    got, found = EmbeddingCache(KEY, LocalFolderStore(tmp_path)).fetch(["b", "a"], 8)
    assert found.all()
    np.testing.assert_array_equal(got, v[::-1])


def test_files_are_npy_and_json_without_pickle(tmp_path: Path) -> None:
    EmbeddingCache(KEY, LocalFolderStore(tmp_path)).put(["a"], vectors(1))
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert [Path(f).suffix for f in files] == [".json", ".npy"]
    assert all(f.startswith("model_256/") for f in files)
    meta = json.loads((tmp_path / files[0]).read_text())
    assert meta == {"encoder": KEY, "dim": 8, "keys": ["a"]}
    array = np.load(io.BytesIO((tmp_path / files[1]).read_bytes()), allow_pickle=False)
    assert array.dtype == np.float32 and array.shape == (1, 8)


def test_caches_of_different_encoders_do_not_mix(tmp_path: Path) -> None:
    EmbeddingCache("one@256", LocalFolderStore(tmp_path)).put(["a"], vectors(1))
    _, found = EmbeddingCache("two@256", LocalFolderStore(tmp_path)).fetch(["a"], 8)
    assert not found.any()


def test_compaction_merges_shards_and_keeps_every_vector(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path)
    cache = EmbeddingCache(KEY, store, max_shards=3)
    written = {}
    for i in range(5):
        v = vectors(2, seed=i)
        cache.put([f"k{i}a", f"k{i}b"], v)
        written[f"k{i}a"], written[f"k{i}b"] = v[0], v[1]
    assert len([n for n in store.list("") if n.endswith(".json")]) <= 3
    fresh = EmbeddingCache(KEY, store)
    got, found = fresh.fetch(list(written), 8)
    assert found.all()
    np.testing.assert_array_equal(got, np.stack(list(written.values())))


def test_a_vanished_shard_is_a_miss_not_an_error(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path)
    EmbeddingCache(KEY, store).put(["a"], vectors(1))
    reader = EmbeddingCache(KEY, store)
    assert len(reader) == 1  # index listed
    for name in store.list(""):
        if name.endswith(".npy"):
            store.delete(name)
    _, found = reader.fetch(["a"], 8)
    assert not found.any()


def test_unreadable_index_file_is_skipped(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path)
    store.write("model_256/broken.json", b"{not json")
    EmbeddingCache(KEY, store).put(["a"], vectors(1))
    _, found = EmbeddingCache(KEY, store).fetch(["a"], 8)
    assert found.all()


def test_local_store_reports_missing_names_as_key_error(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "nope")
    assert store.list("") == []
    with pytest.raises(KeyError):
        store.read("missing.npy")
    store.delete("missing.npy")  # no error
