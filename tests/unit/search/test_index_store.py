"""The derived search index saved beside a local embedding cache and memory-mapped by the next process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.search.bm25 import Bm25Index, tokenize
from shared.search.embedding.cache import EmbeddingCache, LocalFolderStore
from shared.search.index_store import INDEX_FORMAT, IndexFolder, catalog_content_key, index_key
from shared.search.retrieval import HybridRetriever, RetrievalSettings, SearchFilters, ToolHit

from .fakes import CountingEncoder

QUERIES = ("weather in Oslo", "book a flight to Rome, then convert the price to euros and email it to me",
           "zip these files")


def _build(tmp_path: Path, encoder: Any, catalog: list[dict[str, Any]], **kw: Any) -> HybridRetriever:
    cache = EmbeddingCache(encoder.cache_key, LocalFolderStore(tmp_path / "cache"))
    return HybridRetriever(catalog, encoder=encoder, cache=cache, settings=RetrievalSettings(lru_size=0), **kw)


def _results(retriever: HybridRetriever) -> list[list[ToolHit]]:
    travel = SearchFilters(tags=frozenset({"travel"}))
    return [retriever.search(q, 5) for q in QUERIES] + [retriever.search(q, 3, travel) for q in QUERIES]


def test_a_second_start_loads_the_saved_index_and_answers_the_same(tmp_path: Path, counting: CountingEncoder,
                                                                    catalog: list[dict[str, Any]]) -> None:
    first = _build(tmp_path, counting, catalog)
    assert not first.loaded_from_disk and len(list((tmp_path / "cache").glob("index-*"))) == 1
    embedded = len(counting.texts)
    second = _build(tmp_path, counting, catalog)
    assert second.loaded_from_disk and second.embedding.embedded == 0
    assert len(counting.texts) == embedded  # building the second index embedded nothing
    assert _results(second) == _results(first)
    assert second.names == first.names and len(second) == len(catalog)
    assert [d.name for d in second.documents] == first.names  # rebuilt from the tools on demand


def test_a_changed_catalog_is_derived_again_and_old_bundles_are_pruned(tmp_path: Path, encoder: Any,
                                                                      catalog: list[dict[str, Any]]) -> None:
    settings = RetrievalSettings(lru_size=0, index_bundles_kept=2)
    cache = EmbeddingCache(encoder.cache_key, LocalFolderStore(tmp_path))
    for n in (10, 11, 12):
        retriever = HybridRetriever(catalog[:n], encoder=encoder, cache=cache, settings=settings)
        assert not retriever.loaded_from_disk and len(retriever) == n
    assert len(list(tmp_path.glob("index-*"))) == 2
    again = HybridRetriever(catalog[:12], encoder=encoder, cache=cache, settings=settings)
    assert again.loaded_from_disk and len(again) == 12


def test_the_content_key_names_the_bundle(tmp_path: Path, encoder: Any, catalog: list[dict[str, Any]]) -> None:
    _build(tmp_path, encoder, catalog, content_key="catalog-v1")
    assert (tmp_path / "cache" / f"index-{index_key('catalog-v1', encoder.cache_key)}").is_dir()
    assert _build(tmp_path, encoder, catalog, content_key="catalog-v1").loaded_from_disk
    assert not _build(tmp_path, encoder, catalog, content_key="catalog-v2").loaded_from_disk


def test_a_damaged_bundle_is_rebuilt(tmp_path: Path, encoder: Any, catalog: list[dict[str, Any]]) -> None:
    first = _build(tmp_path, encoder, catalog)
    (bundle,) = (tmp_path / "cache").glob("index-*")
    np.save(bundle / "idf.npy", np.zeros(3, dtype=np.float32))  # no longer fits the vocabulary
    second = _build(tmp_path, encoder, catalog)
    assert not second.loaded_from_disk and _results(second) == _results(first)
    assert _build(tmp_path, encoder, catalog).loaded_from_disk  # the rebuilt index replaced the damaged one


def test_memory_caches_save_nothing(encoder: Any, catalog: list[dict[str, Any]]) -> None:
    retriever = HybridRetriever(catalog, encoder=encoder, cache=EmbeddingCache(encoder.cache_key))
    assert not retriever.loaded_from_disk and retriever.search("weather in Oslo", 1)[0].name == "get_weather"


def test_catalog_content_key_follows_the_tools(catalog: list[dict[str, Any]]) -> None:
    assert catalog_content_key(catalog) == catalog_content_key([dict(t) for t in catalog])
    changed = [*catalog[:-1], {**catalog[-1], "description": "something else"}]
    assert catalog_content_key(changed) != catalog_content_key(catalog)


def test_bm25_arrays_round_trip(tmp_path: Path) -> None:
    bags = [[(t, 1.0) for t in tokenize(text)] for text in ("send an email", "read the inbox", "send a text")]
    index = Bm25Index.build(bags)
    arrays, terms = index.arrays()
    for name, array in arrays.items():
        np.save(tmp_path / f"{name}.npy", array)
    loaded = Bm25Index.from_arrays({n: np.load(tmp_path / f"{n}.npy", mmap_mode="r") for n in arrays}, terms)
    query = tokenize("send email")
    assert np.array_equal(loaded.scores(query)[1], index.scores(query)[1])
    assert loaded.matched_terms(0, query) == index.matched_terms(0, query) == ["send", "email"]
    with pytest.raises(ValueError, match="do not fit"):
        Bm25Index.from_arrays({**arrays, "idf": arrays["idf"][:1]}, terms)


def test_index_folder_ignores_bundles_of_another_format(tmp_path: Path, encoder: Any,
                                                        catalog: list[dict[str, Any]]) -> None:
    _build(tmp_path, encoder, catalog, content_key="v")
    key = index_key("v", encoder.cache_key)
    meta = tmp_path / "cache" / f"index-{key}" / "meta.json"
    meta.write_text(meta.read_text().replace(f'"format":{INDEX_FORMAT}', '"format":0'))
    assert IndexFolder(tmp_path / "cache").load(key) is None
