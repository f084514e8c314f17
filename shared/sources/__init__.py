"""Catalog sources beyond Python functions: OpenAPI documents and MCP servers, behind an SSRF guard and a cache.

- :mod:`shared.sources.config` — the source settings and the entries of the source list (``WEFT_TOOL_SOURCES``).
- :mod:`shared.sources.loader` — sources discovered into the catalog: :func:`load_sources`, :func:`discover_tools`.
- :mod:`shared.sources.openapi` — OpenAPI 3 documents, each operation made into a tool.
- :mod:`shared.sources.openapi_transport` — OpenAPI operations called over HTTP, and document fetches.
- :mod:`shared.sources.mcp` — MCP server tools (stdio or streamable HTTP) through the ``mcp`` SDK.
- :mod:`shared.sources.ssrf` — the network policy every outbound request of a source passes.
- :mod:`shared.sources.cache` — discovered specs as JSON on disk or in Blob Storage, with a TTL.
- :mod:`shared.sources.registry` — sources registered through the API, as one JSON document in Blob Storage or a
  local file, written with ETag concurrency.
- :mod:`shared.sources.registry_sync` — each instance's catalog kept in step with that registry.
"""

from shared.sources.cache import (
    BlobCacheStore,
    CachedDiscovery,
    DiscoveredTool,
    Discovery,
    DiscoveryCache,
    FileCacheStore,
)
from shared.sources.config import (
    McpSourceConfig,
    OpenApiSourceConfig,
    SourceConfig,
    SourceSettings,
    parse_source,
    source_id,
)
from shared.sources.loader import (
    SourceReport,
    build_discovery_cache,
    load_sources,
    load_sources_async,
)
from shared.sources.mcp import McpClient, McpServerParams, McpSettings, McpTransport
from shared.sources.openapi_transport import HttpAuth, OpenApiClient, OpenApiSettings, OpenApiTransport
from shared.sources.registry import BlobRegistryStore, FileRegistryStore, SourceRegistry
from shared.sources.registry_sync import Registration, RegistrySync
from shared.sources.ssrf import DestinationNotAllowed, NetworkPolicy, SsrfGuard

__all__ = [
    "BlobCacheStore",
    "BlobRegistryStore",
    "CachedDiscovery",
    "DestinationNotAllowed",
    "DiscoveredTool",
    "Discovery",
    "DiscoveryCache",
    "FileCacheStore",
    "FileRegistryStore",
    "HttpAuth",
    "McpClient",
    "McpServerParams",
    "McpSettings",
    "McpSourceConfig",
    "McpTransport",
    "NetworkPolicy",
    "OpenApiClient",
    "OpenApiSettings",
    "OpenApiSourceConfig",
    "OpenApiTransport",
    "Registration",
    "RegistrySync",
    "SourceConfig",
    "SourceRegistry",
    "SourceReport",
    "SourceSettings",
    "SsrfGuard",
    "build_discovery_cache",
    "load_sources",
    "load_sources_async",
    "parse_source",
    "source_id",
]
