"""Start-up as the composition root will do it: one sources file with OpenAPI and MCP (stdio and HTTP) sources and a
broken one, loaded concurrently; every loaded tool callable through one executor; then registering a source."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from shared.catalog.catalog import Catalog
from shared.catalog.executor import ToolExecutor
from shared.models import ToolCall
from shared.sources import SourceSettings, build_discovery_cache, load_sources
from shared.sources.ssrf import NetworkPolicy
from tests.fakes.mcp_server import McpHttpServer, stdio_source_config
from tests.fakes.openapi_server import BEARER_TOKEN, PetsApi
from tests.integration.sources.conftest import MemorySecrets


def test_mixed_sources_load_together_and_a_broken_one_is_only_reported(
    tmp_path: Path, pets_api: PetsApi, mcp_http: McpHttpServer
) -> None:
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump({"sources": [
        pets_api.source_config(auth={"secret": "petstore-token"}),
        stdio_source_config(alias="local"),
        mcp_http.source_config(alias="remote"),
        {"type": "mcp", "transport": "http", "url": "http://127.0.0.1:9/mcp", "alias": "gone"},
    ]}))
    settings = SourceSettings(
        sources_file=str(sources), network=NetworkPolicy(allow_private_network=True),
        discovery_cache_dir=str(tmp_path / "cache"), discovery_timeout_s=20,
    )
    secrets = MemorySecrets({"petstore-token": BEARER_TOKEN})
    catalog = Catalog()
    reports = load_sources(catalog, settings, secrets=secrets, cache=build_discovery_cache(settings))
    assert [(r.alias, r.tool_count, r.origin) for r in reports] == [
        ("pets", 12, "fresh"), ("local", 9, "fresh"), ("remote", 9, "fresh"), ("gone", 0, None),
    ]
    assert "could not be reached" in reports[3].error
    assert len(catalog) == 30

    executor = ToolExecutor(catalog)

    async def calls() -> list[object]:
        results = await asyncio.gather(*(executor.execute(ToolCall(run_id="r", step_id=f"s{i}", tool=t, args=a))
                                         for i, (t, a) in enumerate([
                                             ("pets.whoami", {}), ("local.add", {"a": 1, "b": 2}),
                                             ("remote.get_note", {"note_id": "n1"}),
                                         ])))
        return [result.value for result in results]

    assert asyncio.run(calls()) == [{"user": "weft", "trace": None}, {"result": 3},
                                    {"id": "n1", "title": "first", "body": "hello"}]

    again = load_sources(Catalog(), settings, secrets=secrets, cache=build_discovery_cache(settings))
    assert [r.origin for r in again] == ["cache", "cache", "cache", None]
