"""An OpenAPI document served on loopback: imported, its operations called through the executor, errors mapped,
the bearer token read from a named secret, and the SSRF guard refusing loopback unless allowed."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.catalog.catalog import Catalog
from shared.catalog.executor import ToolExecutor
from shared.models import ToolCall, ToolResult
from shared.sources import SourceSettings, load_sources
from shared.sources.openapi_transport import OpenApiSettings
from shared.sources.ssrf import NetworkPolicy
from tests.fakes.openapi_server import BEARER_TOKEN, PetsApi, pets_document
from tests.integration.sources.conftest import MemorySecrets

PRIVATE_OK = NetworkPolicy(allow_private_network=True)


def sources_file(folder: Path, *entries: dict[str, Any]) -> str:
    path = folder / "sources.yaml"
    path.write_text(yaml.safe_dump({"sources": list(entries)}))
    return str(path)


def executor_for(tmp_path: Path, *entries: dict[str, Any], network: NetworkPolicy = PRIVATE_OK,
                 secrets: Any = None, **settings: Any) -> tuple[ToolExecutor, list[Any]]:
    catalog = Catalog()
    source_settings = SourceSettings(sources_file=sources_file(tmp_path, *entries), network=network, **settings)
    reports = load_sources(catalog, source_settings, secrets=secrets)
    return ToolExecutor(catalog), reports


def run(executor: ToolExecutor, tool: str, step: str = "s1", **args: Any) -> ToolResult:
    return asyncio.run(executor.execute(ToolCall(run_id="run-1", step_id=step, tool=tool, args=args)))


def test_operations_are_imported_and_called(tmp_path: Path, pets_api: PetsApi) -> None:
    executor, [report] = executor_for(tmp_path, pets_api.source_config())
    assert (report.type, report.tool_count, report.error, report.origin) == ("openapi", 12, None, "fresh")
    assert report.location == pets_api.document_url

    listed = run(executor, "pets.listPets", limit=1)
    assert (listed.ok, listed.value) == (True, [{"id": 1, "name": "Rex", "tag": "dog"}])
    assert run(executor, "pets.listPets", tag=["cat"]).value == [{"id": 2, "name": "Tom", "tag": "cat"}]
    assert run(executor, "pets.getPet", petId=2).value["name"] == "Tom"
    created = run(executor, "pets.createPet", step="create", name="Fido", tag="dog")
    again = run(executor, "pets.createPet", step="create", name="Fido", tag="dog")  # a retry of the same step
    assert created.value == again.value == {"id": 3, "name": "Fido", "tag": "dog"}
    assert len(pets_api.pets) == 3
    assert run(executor, "pets.importPets", body=[{"name": "A"}, {"name": "B"}]).value == {"imported": 2}
    assert run(executor, "pets.deletePet", petId=1).value is None
    assert run(executor, "pets.getFile", name="a b/ü").value == {"raw_path": "/api/files/a%20b%2F%C3%BC"}
    assert run(executor, "pets.readme").value == "hello, pets"

    posts = [r for r in pets_api.requests if r.method == "POST" and r.path == "/api/pets"]
    assert [r.headers["idempotency-key"] for r in posts] == ["run-1:create", "run-1:create"]
    assert posts[0].json() == {"name": "Fido", "tag": "dog"}


def test_the_yaml_document_works_too(tmp_path: Path, pets_api: PetsApi) -> None:
    executor, [report] = executor_for(tmp_path, {"type": "openapi", "url": f"{pets_api.url}/openapi.yaml"})
    assert report.tool_count == 12
    assert run(executor, "getPet", petId=1).value["name"] == "Rex"


@pytest.mark.parametrize(
    ("tool", "args", "code", "retryable", "text"),
    [
        pytest.param("pets.broken", {}, "upstream_unavailable", True, "HTTP 500", id="500-retryable"),
        pytest.param("pets.busy", {}, "upstream_unavailable", True, "Retry-After: 3", id="429-retryable"),
        pytest.param("pets.getPet", {"petId": 99}, "invalid_request", False, "HTTP 404", id="404-final"),
        pytest.param("pets.whoami", {}, "invalid_request", False, "HTTP 401", id="401-final"),
        pytest.param("pets.moved", {}, "invalid_request", False, "not followed", id="302-not-followed"),
        pytest.param("pets.big", {"size": 5000}, "invalid_request", False, "limit of 1000", id="too-large"),
        pytest.param("pets.getPet", {"petId": "one"}, "tool_arguments_invalid", False, "petId", id="bad-argument"),
    ],
)
def test_errors_are_mapped(
    tmp_path: Path, pets_api: PetsApi, tool: str, args: dict[str, Any], code: str, retryable: bool, text: str
) -> None:
    executor, _ = executor_for(tmp_path, pets_api.source_config(), openapi=OpenApiSettings(max_response_bytes=1000))
    result = run(executor, tool, **args)
    assert result.ok is False
    assert (result.error.code, result.error.retryable) == (code, retryable)
    assert text in result.error.message


def test_the_bearer_token_comes_from_a_named_secret(tmp_path: Path, pets_api: PetsApi) -> None:
    entry = pets_api.source_config(auth={"header": "Authorization", "scheme": "Bearer", "secret": "petstore-token"})
    secrets = MemorySecrets({"petstore-token": BEARER_TOKEN})
    executor, [report] = executor_for(tmp_path, entry, secrets=secrets)
    whoami = run(executor, "pets.whoami", **{"X-Trace": "t-7"})
    assert (whoami.ok, whoami.value) == (True, {"user": "weft", "trace": "t-7"})
    assert "Authorization" not in executor.catalog.get("pets.whoami").spec.parameters["properties"]
    assert BEARER_TOKEN not in (tmp_path / "sources.yaml").read_text()
    assert BEARER_TOKEN not in report.model_dump_json()
    secrets.values["petstore-token"] = "wrong"
    rejected = run(executor, "pets.whoami")
    assert rejected.error.code == "invalid_request" and "wrong" not in rejected.error.message


def test_a_missing_secret_fails_the_call_not_the_import(tmp_path: Path, pets_api: PetsApi) -> None:
    executor, [report] = executor_for(tmp_path, pets_api.source_config(auth={"secret": "absent"}),
                                      secrets=MemorySecrets({}))
    assert report.tool_count == 12
    result = run(executor, "pets.whoami")
    assert (result.error.code, result.error.retryable) == ("not_configured", False)


def test_the_document_fetch_is_refused_by_default(tmp_path: Path, pets_api: PetsApi) -> None:
    _, [report] = executor_for(tmp_path, pets_api.source_config(), network=NetworkPolicy())
    assert report.tool_count == 0
    assert "127.0.0.1 is a loopback address" in report.error
    assert pets_api.requests == []


def test_a_loopback_call_is_refused_by_default_and_works_when_allowed(tmp_path: Path, pets_api: PetsApi) -> None:
    spec = tmp_path / "pets.yaml"  # a local document whose server is the loopback API
    spec.write_text(yaml.safe_dump(pets_document(pets_api.url)))
    entry = {"type": "openapi", "path": str(spec), "alias": "pets"}
    refused_executor, _ = executor_for(tmp_path, entry, network=NetworkPolicy())
    refused = run(refused_executor, "pets.listPets")
    assert (refused.error.code, refused.error.retryable) == ("destination_not_allowed", False)
    assert "127.0.0.1" in refused.error.message
    assert pets_api.requests == []
    host_executor, _ = executor_for(tmp_path, entry, network=NetworkPolicy(allowed_hosts=frozenset({"127.0.0.1"})))
    assert run(host_executor, "pets.listPets").ok
    private_executor, _ = executor_for(tmp_path, entry)
    assert run(private_executor, "pets.getPet", petId=1).value["name"] == "Rex"


def test_the_same_executor_serves_several_event_loops_at_once(tmp_path: Path, pets_api: PetsApi) -> None:
    executor, _ = executor_for(tmp_path, pets_api.source_config())

    async def many(offset: int) -> list[bool]:
        calls = [
            executor.execute(ToolCall(run_id="r", step_id=f"s{offset}-{i}", tool="pets.getPet", args={"petId": 1}))
            for i in range(10)
        ]
        return [result.ok for result in await asyncio.gather(*calls)]

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda offset: asyncio.run(many(offset)), range(4)))
    assert outcomes == [[True] * 10] * 4
    asyncio.run(many(9))
    shared_client = executor.catalog.get("pets.getPet").transport.client
    assert len(shared_client._clients) == 1  # clients of finished loops are dropped, not kept forever
