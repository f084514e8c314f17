"""The discovery cache in Blob Storage (Azurite): miss, hit, TTL, stale-on-error, and JSON in the blob."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

from shared.errors import UpstreamUnavailable
from shared.models import ToolSpec
from shared.sources import SourceSettings, build_discovery_cache
from shared.sources.cache import BlobCacheStore, DiscoveredTool, DiscoveryCache

pytestmark = pytest.mark.azurite

SOURCE = hashlib.sha256(b"blob-source").hexdigest()


@pytest.fixture
def container(azurite: Any) -> Iterator[Any]:
    """A container that does not exist yet (the store creates it on its first write)."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    client = service.get_container_client(f"discovery-{uuid.uuid4().hex[:12]}")
    yield client
    with contextlib.suppress(ResourceNotFoundError):
        client.delete_container()


class Discoverer:
    def __init__(self) -> None:
        self.calls = 0
        self.error: Exception | None = None

    async def __call__(self) -> list[DiscoveredTool]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return [DiscoveredTool(ToolSpec(name=f"tool_{self.calls}", source="openapi"), {"method": "GET", "path": "/"})]


def test_miss_hit_ttl_and_stale_fallback_in_blob_storage(container: Any) -> None:
    now = [5_000.0]
    cache = DiscoveryCache(BlobCacheStore(container), ttl_s=60, clock=lambda: now[0])
    discover = Discoverer()
    assert cache.get(SOURCE) is None  # the container does not even exist yet
    first = asyncio.run(cache.get_or_discover(SOURCE, discover))
    hit = asyncio.run(cache.get_or_discover(SOURCE, discover))
    now[0] += 61
    refreshed = asyncio.run(cache.get_or_discover(SOURCE, discover))
    now[0] += 61
    discover.error = UpstreamUnavailable("down")
    stale = asyncio.run(cache.get_or_discover(SOURCE, discover))
    assert [r.origin for r in (first, hit, refreshed, stale)] == ["fresh", "cache", "fresh", "stale"]
    assert discover.calls == 3
    assert [t.spec.name for t in stale.discovery.tools] == ["tool_2"]
    blob = container.get_blob_client(f"discovery/{SOURCE}.json")
    assert blob.get_blob_properties().content_settings.content_type == "application/json"
    stored = json.loads(blob.download_blob().readall())
    assert stored["version"] == refreshed.discovery.version and stored["source_id"] == SOURCE


def test_build_discovery_cache_uses_the_container_when_given(container: Any) -> None:
    cache = build_discovery_cache(SourceSettings(discovery_ttl_s=10), container=container)
    assert isinstance(cache.store, BlobCacheStore) and cache.ttl_s == 10
    asyncio.run(cache.get_or_discover(SOURCE, Discoverer()))
    assert [blob.name for blob in container.list_blobs()] == [f"discovery/{SOURCE}.json"]
