"""The public surface of ``shared.sources``: what each module exports, and no Azure Functions import anywhere."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import shared.sources

PACKAGE = Path(shared.sources.__file__).parent

EXPORTS = {
    "shared.sources": {
        "BlobCacheStore", "BlobRegistryStore", "CachedDiscovery", "DestinationNotAllowed", "DiscoveredTool",
        "Discovery", "DiscoveryCache", "FileCacheStore", "FileRegistryStore", "HttpAuth", "McpClient",
        "McpServerParams", "McpSettings", "McpSourceConfig", "McpTransport", "NetworkPolicy", "OpenApiClient",
        "OpenApiSettings", "OpenApiSourceConfig", "OpenApiTransport", "Registration", "RegistrySync", "SourceConfig",
        "SourceRegistry", "SourceReport", "SourceSettings", "SsrfGuard", "build_discovery_cache", "load_sources",
        "load_sources_async", "parse_source", "source_id",
    },
    "shared.sources.ssrf": {
        "PLATFORM_ENDPOINTS", "DestinationNotAllowed", "GuardedTransport", "IPAddress", "NetworkPolicy", "Resolver",
        "SsrfGuard", "address_problem",
    },
    "shared.sources.cache": {
        "BlobCacheStore", "CacheStore", "CachedDiscovery", "DiscoveredTool", "Discovery", "DiscoveryCache",
        "FileCacheStore", "Origin",
    },
    "shared.sources.openapi": {"load_document", "openapi_tools", "parse_document", "safe_tool_name", "tool_name"},
    "shared.sources.openapi_transport": {
        "HttpAuth", "OpenApiClient", "OpenApiSettings", "OpenApiTransport", "fetch_document",
    },
    "shared.sources.mcp": {
        "IDEMPOTENCY_META_KEY", "McpClient", "McpServerParams", "McpSettings", "McpTransport", "mcp_tools",
        "result_value", "translate_error",
    },
    "shared.sources.config": {
        "AuthConfig", "McpSourceConfig", "OpenApiSourceConfig", "SourceConfig", "SourceSettings", "parse_source",
        "read_sources_file", "source_id",
    },
    "shared.sources.loader": {
        "SourceReport", "bind_tools", "build_discovery_cache", "check_registrable", "discover_source",
        "discover_tools", "failure_report", "load_sources", "load_sources_async",
    },
    "shared.sources.registry": {
        "BlobRegistryStore", "FileRegistryStore", "RegisteredSource", "RegistryConflict", "RegistrySnapshot",
        "RegistryStore", "SourceRegistry",
    },
    "shared.sources.registry_sync": {"Registration", "RegistrySync"},
}


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_all_is_the_public_surface(module: str) -> None:
    imported = importlib.import_module(module)
    assert set(imported.__all__) == EXPORTS[module]
    assert all(hasattr(imported, name) for name in imported.__all__)


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_modules_stay_small_and_never_import_azure_functions(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.startswith("azure.functions")}
    assert len(path.read_text().splitlines()) < 600
