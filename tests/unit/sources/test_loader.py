"""Loading sources into a catalog: reports, broken sources, name clashes, the cache, registration (OpenAPI files
only: no servers needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from shared.catalog.catalog import Catalog
from shared.sources.cache import DiscoveryCache, FileCacheStore
from shared.sources.config import SourceSettings
from shared.sources.loader import load_sources, load_sources_async
from tests.fakes.openapi_server import pets_document
from tests.unit.sources.conftest import write_sources


def write_pets(folder: Path, name: str = "pets.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(pets_document("https://pets.example")))
    return path


def settings_for(path: Path, **extra: Any) -> SourceSettings:
    return SourceSettings(sources_file=str(path), **extra)


def test_no_sources_file_means_no_sources() -> None:
    assert load_sources(Catalog(), SourceSettings()) == []


def test_a_broken_source_is_reported_and_the_others_load(tmp_path: Path) -> None:
    write_pets(tmp_path)
    path = write_sources(tmp_path, [
        {"type": "openapi", "path": "pets.yaml", "alias": "pets"},
        {"type": "openapi", "path": "missing.yaml", "alias": "gone"},
        {"type": "mcp", "transport": "stdio", "command": str(tmp_path / "no-such-server")},
        {"type": "openapi"},
        "not even an object",
        {"type": "openapi", "path": "pets.yaml", "alias": "again"},
    ])
    catalog = Catalog()
    reports = load_sources(catalog, settings_for(path))
    assert [(r.type, r.alias, r.tool_count, r.error is None) for r in reports] == [
        ("openapi", "pets", 12, True),
        ("openapi", "gone", 0, False),
        ("mcp", None, 0, False),
        ("openapi", None, 0, False),
        ("?", None, 0, False),
        ("openapi", "again", 12, True),
    ]
    assert "cannot read OpenAPI document" in reports[1].error
    assert "cannot start MCP server" in reports[2].error
    assert "url or path" in reports[3].error
    assert reports[0].origin == "fresh" and reports[0].version and reports[0].location.endswith("pets.yaml")
    assert len(catalog) == 24 and "pets.getPet" in catalog and "again.getPet" in catalog
    assert catalog.get("pets.getPet").spec.source == "openapi"


def test_a_name_clash_rejects_the_whole_later_source(tmp_path: Path) -> None:
    write_pets(tmp_path)
    path = write_sources(tmp_path, [{"type": "openapi", "path": "pets.yaml"}, {"type": "openapi", "path": "pets.yaml",
                                                                               "timeout_s": 5}])
    catalog = Catalog()
    first, second = load_sources(catalog, settings_for(path))
    assert (first.tool_count, second.tool_count) == (12, 0)
    assert "already registered; give the source an alias" in second.error
    assert len(catalog) == 12


def test_discoveries_come_from_the_cache_and_fall_back_to_stale(tmp_path: Path) -> None:
    pets = write_pets(tmp_path)
    path = write_sources(tmp_path, [{"type": "openapi", "path": "pets.yaml", "alias": "pets"}])
    now = [1000.0]
    cache = DiscoveryCache(FileCacheStore(tmp_path / "cache"), ttl_s=60, clock=lambda: now[0])
    first = load_sources(Catalog(), settings_for(path), cache=cache)[0]
    second = load_sources(Catalog(), settings_for(path), cache=cache)[0]
    now[0] += 120
    pets.unlink()
    catalog = Catalog()
    third = load_sources(catalog, settings_for(path), cache=cache)[0]
    assert [r.origin for r in (first, second, third)] == ["fresh", "cache", "stale"]
    assert first.version == second.version == third.version
    assert third.tool_count == 12 and "cannot read OpenAPI document" in third.error
    assert "pets.createPet" in catalog


def test_load_sources_works_from_inside_a_running_event_loop(tmp_path: Path) -> None:
    write_pets(tmp_path)
    path = write_sources(tmp_path, [{"type": "openapi", "path": "pets.yaml"}])

    async def from_async_code() -> int:
        return load_sources(Catalog(), settings_for(path))[0].tool_count

    assert asyncio.run(from_async_code()) == 12
    assert asyncio.run(load_sources_async(Catalog(), settings_for(path)))[0].tool_count == 12
