"""Fakes shared by the source unit tests: an in-memory secret source, a table-driven DNS resolver and a writer of
sources files."""

from __future__ import annotations

import json
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from shared.errors import NotConfigured


class MemorySecrets:
    """A :class:`~shared.secrets.SecretSource` over a dict; records which names were read."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)
        self.reads: list[str] = []

    def get(self, name: str) -> str:
        self.reads.append(name)
        if name not in self.values:
            raise NotConfigured(f"no secret named {name!r}", field=name)
        return self.values[name]


def table_resolver(table: Mapping[str, list[str]]) -> Callable[[str, int], Awaitable[list[str]]]:
    """A resolver answering from ``table``; unknown names fail like the system resolver does. Records lookups."""
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(table[host])

    resolve.lookups = lookups  # type: ignore[attr-defined]
    return resolve


def write_sources(folder: Path, entries: list[Any], name: str = "sources.yaml") -> Path:
    """Write ``{"sources": entries}`` to ``folder / name``: JSON if ``name`` ends in .json, else YAML."""
    path = folder / name
    data = {"sources": entries}
    path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data))
    return path
