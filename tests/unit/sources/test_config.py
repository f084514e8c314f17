"""Source configuration, settings, and loading sources into a catalog (OpenAPI files only: no servers needed)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.catalog import Catalog
from shared.errors import InvalidRequest, NotConfigured
from shared.sources.cache import DiscoveryCache, FileCacheStore
from shared.sources.config import (
    McpSourceConfig,
    OpenApiSourceConfig,
    SourceSettings,
    load_sources,
    load_sources_async,
    parse_source,
    read_sources_file,
    register_source,
    source_id,
)
from shared.sources.mcp import McpSettings
from shared.sources.openapi_transport import OpenApiSettings
from shared.sources.ssrf import NetworkPolicy
from tests.fakes.openapi_server import pets_document


def write_pets(folder: Path, name: str = "pets.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(pets_document("https://pets.example")))
    return path


def write_sources(folder: Path, entries: list[Any], name: str = "sources.yaml") -> Path:
    path = folder / name
    data = {"sources": entries}
    path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data))
    return path


def settings_for(path: Path, **extra: Any) -> SourceSettings:
    return SourceSettings(sources_file=str(path), **extra)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        pytest.param({"type": "openapi"}, "give exactly one of url or path", id="openapi-no-location"),
        pytest.param({"type": "openapi", "url": "https://a", "path": "b"}, "exactly one", id="openapi-two-locations"),
        pytest.param({"type": "mcp", "transport": "stdio"}, "needs a command", id="stdio-no-command"),
        pytest.param({"type": "mcp", "transport": "http"}, "needs a url", id="http-no-url"),
        pytest.param({"type": "mcp", "transport": "http", "url": "https://m", "command": "x"}, "for stdio",
                     id="http-with-command"),
        pytest.param({"type": "mcp", "transport": "stdio", "command": "x", "url": "https://m"}, "for http",
                     id="stdio-with-url"),
        pytest.param({"type": "mcp", "transport": "ws", "url": "wss://m"}, "transport", id="unknown-transport"),
        pytest.param({"type": "grpc"}, "type", id="unknown-type"),
        pytest.param({"type": "openapi", "url": "https://a", "alias": "a.b"}, "alias", id="dotted-alias"),
        pytest.param({"type": "openapi", "url": "https://a", "auth": {"token": "x"}}, "auth", id="inline-credential"),
        pytest.param({"type": "openapi", "url": "https://a", "extra": 1}, "extra", id="unknown-key"),
    ],
)
def test_invalid_entries_are_refused_naming_the_field(entry: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidRequest, match=problem) as caught:
        parse_source(entry, field="sources[3]")
    assert caught.value.field is not None and caught.value.field.startswith("sources[3]")


def test_valid_entries_parse_with_defaults() -> None:
    openapi = parse_source({"type": "openapi", "url": "https://a/openapi.json", "auth": {"secret": "tok"}})
    assert isinstance(openapi, OpenApiSourceConfig)
    assert openapi.auth is not None and (openapi.auth.header, openapi.auth.scheme) == ("Authorization", "Bearer")
    stdio = parse_source({"type": "mcp", "transport": "stdio", "command": "/bin/srv", "args": ["--x", "secret-arg"],
                          "secret_env": {"TOKEN": "srv-token"}})
    assert isinstance(stdio, McpSourceConfig)
    assert stdio.location() == "srv"  # arguments stay out of reports
    params = stdio.server_params()
    assert (params.args, dict(params.secret_env)) == (("--x", "secret-arg"), {"TOKEN": "srv-token"})


def test_relative_paths_resolve_next_to_the_sources_file(tmp_path: Path) -> None:
    openapi = parse_source({"type": "openapi", "path": "specs/a.yaml"}, base_dir=tmp_path)
    stdio = parse_source({"type": "mcp", "transport": "stdio", "command": "x", "cwd": "work"}, base_dir=tmp_path)
    absolute = parse_source({"type": "openapi", "path": "/abs/a.yaml"}, base_dir=tmp_path)
    assert openapi.path == str(tmp_path / "specs/a.yaml")
    assert stdio.cwd == str(tmp_path / "work")
    assert absolute.path == "/abs/a.yaml"


def test_source_ids_are_stable_hashes_of_the_whole_configuration() -> None:
    a = parse_source({"type": "openapi", "url": "https://a", "alias": "x"})
    same = parse_source({"alias": "x", "url": "https://a", "type": "openapi"})
    other = parse_source({"type": "openapi", "url": "https://a", "alias": "y"})
    assert source_id(a) == source_id(same) != source_id(other)
    assert len(source_id(a)) == 64


@pytest.mark.parametrize("name", [pytest.param("sources.yaml", id="yaml"), pytest.param("sources.json", id="json")])
def test_sources_files_in_json_and_yaml(tmp_path: Path, name: str) -> None:
    path = write_sources(tmp_path, [{"type": "openapi", "url": "https://a"}], name)
    assert read_sources_file(path) == [{"type": "openapi", "url": "https://a"}]


def test_a_bare_list_and_an_empty_file_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text("- {type: openapi, url: 'https://a'}\n")
    (tmp_path / "empty.yaml").write_text("")
    assert len(read_sources_file(tmp_path / "list.yaml")) == 1
    assert read_sources_file(tmp_path / "empty.yaml") == []


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param(None, "cannot be read", id="missing"),
        pytest.param("{broken: [", "cannot be read", id="bad-yaml"),
        pytest.param("sources: {a: 1}", "expected a list", id="not-a-list"),
    ],
)
def test_unreadable_sources_files_are_configuration_errors(tmp_path: Path, content: str | None, problem: str) -> None:
    path = tmp_path / "sources.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(NotConfigured, match=problem) as caught:
        read_sources_file(path)
    assert caught.value.field == "WEFT_TOOL_SOURCES"


def test_settings_from_env() -> None:
    env = {
        "WEFT_TOOL_SOURCES": " /etc/weft/sources.yaml ", "WEFT_DISCOVERY_TTL_S": "60", "WEFT_DISCOVERY_CACHE_DIR": "/c",
        "WEFT_DISCOVERY_TIMEOUT_S": "5", "WEFT_ALLOW_PRIVATE_NETWORK": "1", "WEFT_OPENAPI_MAX_RESPONSE_BYTES": "10",
        "WEFT_MCP_POOL": "no",
    }
    assert SourceSettings.from_env(env) == SourceSettings(
        sources_file="/etc/weft/sources.yaml", discovery_ttl_s=60.0, discovery_cache_dir="/c", discovery_timeout_s=5.0,
        network=NetworkPolicy(allow_private_network=True), openapi=OpenApiSettings(max_response_bytes=10),
        mcp=McpSettings(pool=False),
    )
    assert SourceSettings.from_env({}) == SourceSettings()
    with pytest.raises(ValueError, match="WEFT_DISCOVERY_TTL_S"):
        SourceSettings.from_env({"WEFT_DISCOVERY_TTL_S": "soon"})


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


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param({"type": "mcp", "transport": "stdio", "command": "rm", "args": ["-rf", "/"]}, id="stdio-command"),
        pytest.param({"type": "openapi", "path": "/etc/passwd"}, id="local-path"),
    ],
)
def test_register_source_refuses_local_sources_unless_allowed(entry: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest, match="WEFT_TOOL_SOURCES"):
        asyncio.run(register_source(Catalog(), entry, SourceSettings()))


def test_register_source_adds_tools_and_raises_on_failure(tmp_path: Path) -> None:
    pets = write_pets(tmp_path)
    catalog = Catalog()
    entry = {"type": "openapi", "path": str(pets), "alias": "pets"}
    report = asyncio.run(register_source(catalog, entry, SourceSettings(), allow_local=True))
    assert report.tool_count == 12 and report.origin == "fresh" and len(catalog) == 12
    with pytest.raises(InvalidRequest, match="already registered"):
        asyncio.run(register_source(catalog, entry, SourceSettings(), allow_local=True))
    replaced = asyncio.run(register_source(catalog, entry, SourceSettings(), allow_local=True, replace=True))
    assert replaced.tool_count == 12 and len(catalog) == 12
    with pytest.raises(InvalidRequest, match="cannot read"):
        asyncio.run(register_source(catalog, {**entry, "path": str(tmp_path / "nope.yaml")}, SourceSettings(),
                                    allow_local=True))
    with pytest.raises(InvalidRequest, match="url or path"):
        asyncio.run(register_source(catalog, {"type": "openapi"}, SourceSettings()))
