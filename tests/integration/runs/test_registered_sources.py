"""A source registered on one devhost is used by a run on another that shares its storage, and still after that
devhost restarts: the registry is in Blob Storage (Azurite), or in a file of a state folder both devhosts use, not in
the memory of the instance that was asked."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient

from tests.fakes.openapi_server import PetsApi
from tests.integration.runs.conftest import run_plan, steps_by_id, weft_env
from tests.support import ROOT, Azurite, DevhostProcess, free_port, http

pytestmark = pytest.mark.azurite

Registry = Callable[[], list[dict[str, object]]]
"""The registered entries, read from where the registry is stored."""


@pytest.fixture
def pets() -> Iterator[PetsApi]:
    server = PetsApi()
    server.start()
    yield server
    server.stop()


def instance_env(state: Path, azurite: Azurite | None, **extra: str) -> dict[str, str]:
    # An hour between periodic checks: instance B must find the source because a run names its tools.
    return weft_env(azurite, state, WEFT_ALLOW_PRIVATE_NETWORK="true", WEFT_SOURCE_REGISTRY_REFRESH_S="3600",
                    WEFT_DISCOVERY_CACHE_DIR=str(state / "discovery"), WEFT_DEMO_TOOLS="false", **extra)


@pytest.fixture(params=["blob", "local-file"])
def shared_storage(
    request: pytest.FixtureRequest, azurite: Azurite, tmp_path: Path
) -> Iterator[tuple[dict[str, str], dict[str, str], Registry]]:
    """Environments of instances A and B that share a registry, and a reader of the stored registry."""
    if request.param == "local-file":
        state = tmp_path / "shared-state"
        env = instance_env(state, None)
        yield env, env, lambda: json.loads((state / "source-registry.json").read_text())["sources"]
        return
    container = f"sources-{uuid.uuid4().hex[:12]}"
    client = ContainerClient.from_connection_string(azurite.connection_string, container)
    yield (instance_env(tmp_path / "a", azurite, WEFT_SOURCE_REGISTRY_CONTAINER=container),
           instance_env(tmp_path / "b", azurite, WEFT_SOURCE_REGISTRY_CONTAINER=container),
           lambda: json.loads(client.download_blob("registry.json").readall())["sources"])
    client.delete_container()


def shop_plan() -> list[dict[str, object]]:
    return [
        {"id": "new", "tool": "shop.createPet", "args": {"name": "Nemo", "tag": "fish"}},
        {"id": "list", "tool": "shop.listPets", "args": {"limit": 10}, "depends_on": ["new"]},
    ]


def test_a_source_registered_on_one_instance_runs_on_another_and_survives_its_restart(
    shared_storage: tuple[dict[str, str], dict[str, str], Registry], pets: PetsApi, tmp_path: Path
) -> None:
    env_a, env_b, registry = shared_storage
    a = DevhostProcess(ROOT, tmp_path / "a.sqlite", free_port(), env_a).start()
    b = DevhostProcess(ROOT, tmp_path / "b.sqlite", free_port(), env_b).start()
    try:
        assert http("GET", b.base_url + "/api/tools")[2]["count"] == 0, "b starts with an empty catalog"

        status, _, report = http("POST", a.base_url + "/api/tools/sources", pets.source_config(alias="shop"))
        assert status == 201, report
        assert report["tool_count"] == 12 and "shop.createPet" in report["tools"]
        again = http("POST", a.base_url + "/api/tools/sources", pets.source_config(alias="shop"))
        assert again[0] == 200 and again[2]["source_id"] == report["source_id"], "registering again is idempotent"

        view = run_plan(b, shop_plan())
        assert view["status"] == "completed", view["errors"]
        assert "Nemo" in json.dumps(steps_by_id(view)["list"]["result"])
        assert http("GET", b.base_url + "/api/tools/shop.getPet")[0] == 200
        listing = http("GET", b.base_url + "/api/tools")[2]
        assert [(s["alias"], s["tool_count"], s["error"]) for s in listing["sources"]] == [("shop", 12, None)]

        b.stop()
        b = DevhostProcess(ROOT, tmp_path / "b.sqlite", free_port(), env_b).start()
        listing = http("GET", b.base_url + "/api/tools")[2]
        assert listing["count"] == 12, "loaded at start-up from the registry"
        view = run_plan(b, [{"id": "get", "tool": "shop.getPet", "args": {"petId": 1}}])
        assert view["status"] == "completed", view["errors"]
        assert steps_by_id(view)["get"]["result"]["name"] == "Rex"
    finally:
        a.stop()
        b.stop()

    entries = registry()
    assert [entry["id"] for entry in entries] == [report["source_id"]]
    assert entries[0]["config"]["url"] == pets.document_url
