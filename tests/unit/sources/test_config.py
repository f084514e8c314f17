"""Source configuration: entries of the source list, source ids, sources files and settings from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.errors import InvalidRequest, NotConfigured
from shared.sources.config import (
    McpSourceConfig,
    OpenApiSourceConfig,
    SourceSettings,
    parse_source,
    read_sources_file,
    source_id,
)
from shared.sources.mcp import McpSettings
from shared.sources.openapi_transport import OpenApiSettings
from shared.sources.ssrf import NetworkPolicy
from tests.unit.sources.conftest import write_sources


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
        "WEFT_MCP_POOL": "no", "WEFT_SOURCE_REGISTRY_CONTAINER": "sources", "WEFT_SOURCE_REGISTRY_REFRESH_S": "5",
    }
    assert SourceSettings.from_env(env) == SourceSettings(
        sources_file="/etc/weft/sources.yaml", discovery_ttl_s=60.0, discovery_cache_dir="/c", discovery_timeout_s=5.0,
        network=NetworkPolicy(allow_private_network=True), openapi=OpenApiSettings(max_response_bytes=10),
        mcp=McpSettings(pool=False), registry_container="sources", registry_refresh_s=5.0,
    )
    assert (SourceSettings().registry_container, SourceSettings().registry_refresh_s) == ("weft-sources", 30.0)
    assert SourceSettings.from_env({}) == SourceSettings()
    with pytest.raises(ValueError, match="WEFT_DISCOVERY_TTL_S"):
        SourceSettings.from_env({"WEFT_DISCOVERY_TTL_S": "soon"})
