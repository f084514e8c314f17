"""Loopback servers for the source integration tests: the pets API and the MCP notes server over HTTP."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from shared.errors import NotConfigured
from tests.fakes.mcp_server import McpHttpServer, start_http_server
from tests.fakes.openapi_server import PetsApi, start_openapi_server


class MemorySecrets:
    """An in-memory :class:`~shared.secrets.SecretSource`."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)

    def get(self, name: str) -> str:
        if name not in self.values:
            raise NotConfigured(f"no secret named {name!r}", field=name)
        return self.values[name]


@pytest.fixture
def pets_api() -> Iterator[PetsApi]:
    """A fresh pets API (its state changes with the calls)."""
    server = start_openapi_server()
    yield server
    server.stop()
    assert server.errors == []


@pytest.fixture(scope="module")
def mcp_http() -> Iterator[McpHttpServer]:
    """The MCP notes server over streamable HTTP, one per module."""
    with start_http_server() as server:
        yield server
