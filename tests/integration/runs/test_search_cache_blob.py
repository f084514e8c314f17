"""Tool search on the devhost keeps its embedding cache in Blob Storage (Azurite) when a container is configured."""

from __future__ import annotations

import pytest
from azure.storage.blob import ContainerClient

from tests.support import Azurite, DevhostProcess, http

pytestmark = pytest.mark.azurite


def test_search_embeddings_are_cached_in_blob_storage(azurite: Azurite, weft: DevhostProcess) -> None:
    status, _, reply = http("POST", weft.base_url + "/api/tools/search",
                            {"query": "convert miles to kilometres", "k": 3}, timeout=300)
    assert status == 200, reply
    assert reply["results"][0]["name"] == "convert_units"
    container = ContainerClient.from_connection_string(azurite.connection_string, "embedding-cache")
    names = list(container.list_blob_names())
    assert any(n.endswith(".npy") for n in names) and any(n.endswith(".json") for n in names), names
