"""The source registry in Blob Storage (Azurite): ETag-conditional writes, concurrent registrations from separate
clients, and two catalogs kept in step through it with a real OpenAPI server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.catalog.catalog import Catalog
from shared.catalog.executor import ToolExecutor
from shared.models import ToolCall
from shared.payloads import PayloadSettings, container_client
from shared.sources import SourceSettings
from shared.sources.config import parse_source
from shared.sources.registry import BlobRegistryStore, RegistryConflict, SourceRegistry
from shared.sources.registry_sync import RegistrySync
from shared.sources.ssrf import NetworkPolicy
from tests.fakes.openapi_server import PetsApi
from tests.support import Azurite

pytestmark = pytest.mark.azurite


@pytest.fixture
def container_name(azurite: Azurite) -> Iterator[str]:
    """A container that does not exist yet (the registry creates it on its first write)."""
    name = f"sources-{uuid.uuid4().hex[:12]}"
    yield name
    with contextlib.suppress(ResourceNotFoundError):
        ContainerClient.from_connection_string(azurite.connection_string, name).delete_container()


def client(azurite: Azurite, container_name: str) -> ContainerClient:
    """A client of its own, built the way the runtime builds them (as another instance would)."""
    built = container_client(PayloadSettings(connection_string=azurite.connection_string), container_name)
    assert built is not None
    return built


def openapi(alias: str) -> Any:
    return parse_source({"type": "openapi", "url": f"https://{alias}.example/openapi.json", "alias": alias})


def test_conditional_writes_on_a_blob(azurite: Azurite, container_name: str) -> None:
    store = BlobRegistryStore(client(azurite, container_name))
    assert store.version() is None and store.read() == (None, None)
    first = store.write(b'{"a": 1}', if_match=None)  # creates the container too
    assert store.version() == first and store.read() == (b'{"a": 1}', first)
    with pytest.raises(RegistryConflict):
        store.write(b'{"b": 2}', if_match=None)
    second = store.write(b'{"a": 2}', if_match=first)
    with pytest.raises(RegistryConflict):
        store.write(b'{"a": 3}', if_match=first)
    assert store.read() == (b'{"a": 2}', second)
    properties = store.container.get_blob_client("registry.json").get_blob_properties()
    assert properties.content_settings.content_type == "application/json"


def test_concurrent_registrations_through_separate_clients_are_all_kept(
    azurite: Azurite, container_name: str
) -> None:
    writers, per_writer = 4, 3
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []
    added: list[bool] = []

    def register(writer: int) -> None:
        registry = SourceRegistry(BlobRegistryStore(client(azurite, container_name)), max_attempts=100)
        barrier.wait()
        try:
            for n in range(per_writer):
                added.append(registry.add(openapi(f"w{writer}_{n}")))
            added.append(registry.add(openapi(f"w{writer}_0")))  # again: idempotent
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert added.count(True) == writers * per_writer and added.count(False) == writers
    snapshot = SourceRegistry(BlobRegistryStore(client(azurite, container_name))).read()
    assert sorted(s.config.alias for s in snapshot.sources) == sorted(
        f"w{w}_{n}" for w in range(writers) for n in range(per_writer))
    raw = client(azurite, container_name).download_blob("registry.json").readall()
    assert json.loads(raw)["format"] == 1


def test_a_source_registered_through_one_client_is_called_from_another_catalog(
    azurite: Azurite, container_name: str, pets_api: PetsApi
) -> None:
    settings = SourceSettings(network=NetworkPolicy(allow_private_network=True))

    def instance() -> RegistrySync:
        registry = SourceRegistry(BlobRegistryStore(client(azurite, container_name)))
        return RegistrySync(Catalog(), registry, settings, interval_s=3600)

    a, b = instance(), instance()
    b.refresh()  # b starts before anything is registered
    registration = asyncio.run(a.register(pets_api.source_config(alias="shop")))
    assert registration.created and registration.report.tool_count == 12
    assert not asyncio.run(a.register(pets_api.source_config(alias="shop"))).created

    assert b.ensure(["shop.listPets"]) == []
    result = asyncio.run(ToolExecutor(b.catalog).execute(
        ToolCall(run_id="r", step_id="s", tool="shop.listPets", args={"limit": 5})))
    assert result.ok, result.error
    assert {pet["name"] for pet in result.value} == {"Rex", "Tom"}

    c = instance()
    c.refresh()  # a new instance finds it at start-up
    assert "shop.getPet" in c.catalog and len(c.catalog) == 12
