"""The embedding cache on real Blob Storage (Azurite): shards written as .npy + JSON, shared between instances."""

from __future__ import annotations

import contextlib
import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from azure.core.exceptions import ResourceNotFoundError

from shared.search.embedding import shared_encoder
from shared.search.embedding.cache import BlobContainerStore, EmbeddingCache
from shared.search.retrieval import HybridRetriever
from tests.unit.search.fakes import CountingEncoder

pytestmark = pytest.mark.azurite

TOOLS = [
    {"name": "get_weather", "description": "Current weather for a city.",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
    {"name": "send_email", "description": "Send an email to a recipient."},
    {"type": "function", "function": {"name": "convert_currency", "description": "Convert money between currencies."}},
]


@pytest.fixture
def container(azurite: Any) -> Iterator[Any]:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    client = service.get_container_client(f"embeddings-{uuid.uuid4().hex[:12]}")
    client.create_container()
    yield client
    with contextlib.suppress(ResourceNotFoundError):
        client.delete_container()


def counting_encoder() -> CountingEncoder:
    """The process-wide query encoder, recording every text it embeds."""
    return CountingEncoder(shared_encoder())


def test_store_round_trip_and_missing_blob(container: Any) -> None:
    store = BlobContainerStore(container)
    store.write("a/x.json", b"{}")
    store.write("a/x.json", b'{"v": 2}')  # overwrite
    store.write("b/y.json", b"[]")
    assert store.list("a/") == ["a/x.json"]
    assert json.loads(store.read("a/x.json")) == {"v": 2}
    with pytest.raises(KeyError):
        store.read("a/missing.json")
    store.delete("a/x.json")
    store.delete("a/x.json")  # already gone: no error
    assert store.list("a/") == []


def test_second_instance_embeds_nothing_and_ranks_the_same(container: Any) -> None:
    first_encoder, second_encoder = counting_encoder(), counting_encoder()
    first = HybridRetriever.from_specs(
        TOOLS, encoder=first_encoder, cache=EmbeddingCache(first_encoder.cache_key, BlobContainerStore(container))
    )
    assert len(first_encoder.texts) == 3
    second = HybridRetriever.from_specs(
        TOOLS, encoder=second_encoder, cache=EmbeddingCache(second_encoder.cache_key, BlobContainerStore(container))
    )
    assert second_encoder.texts == []
    query = "how warm is it in Madrid"
    assert [h.name for h in second.search(query, 3)] == [h.name for h in first.search(query, 3)]
    assert second.search(query, 1)[0].name == "get_weather"


def test_changing_one_tool_embeds_only_that_tool(container: Any) -> None:
    encoder = counting_encoder()
    cache = EmbeddingCache(encoder.cache_key, BlobContainerStore(container))
    HybridRetriever.from_specs(TOOLS, encoder=encoder, cache=cache)
    encoder.texts.clear()
    changed = {"name": "send_email", "description": "Send an email with attachments to a recipient."}
    HybridRetriever.from_specs([TOOLS[0], changed, TOOLS[2]], encoder=encoder, cache=cache)
    assert [t.split(":")[0] for t in encoder.texts] == ["send email"]
    later = counting_encoder()
    HybridRetriever.from_specs(
        [*TOOLS[:1], {"name": "send_email", "description": "Send an email with attachments to a recipient."},
         TOOLS[2]],
        encoder=later, cache=EmbeddingCache(later.cache_key, BlobContainerStore(container)),
    )
    assert later.texts == []


def test_blobs_are_npy_and_json_and_load_without_pickle(container: Any) -> None:
    encoder = counting_encoder()
    HybridRetriever.from_specs(TOOLS, encoder=encoder,
                               cache=EmbeddingCache(encoder.cache_key, BlobContainerStore(container)))
    names = sorted(container.list_blob_names())
    assert {n.rsplit(".", 1)[1] for n in names} == {"json", "npy"}
    index = json.loads(container.download_blob(next(n for n in names if n.endswith(".json"))).readall())
    assert index["encoder"] == encoder.cache_key and len(index["keys"]) == 3
    matrix = np.load(io.BytesIO(container.download_blob(next(n for n in names if n.endswith(".npy"))).readall()),
                     allow_pickle=False)
    assert matrix.shape == (3, 384) and matrix.dtype == np.float32


def test_compaction_on_blob_storage_keeps_every_vector(container: Any) -> None:
    store = BlobContainerStore(container)
    cache = EmbeddingCache("model@256", store, max_shards=2)
    rng = np.random.default_rng(1)
    written = {}
    for i in range(4):
        v = rng.standard_normal((1, 4)).astype(np.float32)
        cache.put([f"k{i}"], v)
        written[f"k{i}"] = v[0]
    assert len([n for n in store.list("") if n.endswith(".json")]) <= 2
    got, found = EmbeddingCache("model@256", store).fetch(list(written), 4)
    assert found.all()
    np.testing.assert_array_equal(got, np.stack(list(written.values())))
