"""Source configuration: the settings of catalog sources and the entries of the source list.

The source list is a JSON or YAML file named by ``WEFT_TOOL_SOURCES`` (``{"sources": [...]}`` or a bare list)::

    sources:
      - {type: openapi, url: https://api.example.com/openapi.json, alias: pets,
         auth: {header: Authorization, scheme: Bearer, secret: petstore-token}}
      - {type: openapi, path: specs/notes.yaml, base_url: https://notes.example.com}
      - {type: mcp, transport: stdio, command: python, args: [-m, notes_server], alias: notes}
      - {type: mcp, transport: http, url: https://mcp.example.com/mcp, auth: {secret: mcp-token}}

Relative ``path`` and ``cwd`` values are relative to the file. Each entry is validated by :func:`parse_source` into a
:data:`SourceConfig`; :mod:`shared.sources.loader` discovers the sources and adds their tools to the catalog.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from shared.errors import NotConfigured
from shared.models import canonical_json, parse_model
from shared.settings import env_float, env_str
from shared.sources.mcp import McpServerParams, McpSettings
from shared.sources.openapi_transport import HttpAuth, OpenApiSettings
from shared.sources.ssrf import NetworkPolicy

__all__ = [
    "AuthConfig",
    "McpSourceConfig",
    "OpenApiSourceConfig",
    "SecretBindings",
    "SourceConfig",
    "SourceSettings",
    "parse_source",
    "read_sources_file",
    "source_id",
]

ALIAS_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,31}$"
"""Aliases prefix tool names (``alias.tool``), so they have no dots of their own."""


# ------------------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class SecretBindings:
    """Which secrets tool sources may use, and the hosts each may be sent to (WEFT_SECRET_BINDINGS, JSON:
    ``{"github-token": ["api.github.com"], "partner-key": ["*.partner.example"]}``). Only an operator sets this: a
    source registered through the API may name only a bound secret, and a secret goes only to its hosts."""

    hosts: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def hosts_for(self, secret: str) -> tuple[str, ...]:
        """The host patterns ``secret`` is bound to (none when unbound)."""
        return next((hosts for name, hosts in self.hosts if name == secret), ())

    @classmethod
    def parse(cls, raw: str) -> SecretBindings:
        """From the setting's JSON text; ``ValueError`` names what is wrong."""
        if not raw.strip():
            return cls()
        try:
            data = json.loads(raw)
        except ValueError:
            raise ValueError("WEFT_SECRET_BINDINGS must be a JSON object: {\"secret name\": [\"host\", ...]}") from None
        if not isinstance(data, dict):
            raise ValueError("WEFT_SECRET_BINDINGS must be a JSON object: {\"secret name\": [\"host\", ...]}")
        bound = []
        for name, hosts in data.items():
            if not (isinstance(hosts, list) and hosts and all(isinstance(h, str) and _HOST_PATTERN.fullmatch(h)
                                                              for h in hosts)):
                raise ValueError(f"WEFT_SECRET_BINDINGS[{name!r}] must be a list of host names or *.domain patterns")
            bound.append((str(name), tuple(h.lower() for h in hosts)))
        return cls(tuple(bound))


_HOST_PATTERN = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$")


@dataclass(frozen=True)
class SourceSettings:
    """Settings of catalog sources. Build with :meth:`from_env`."""

    sources_file: str = ""
    """JSON/YAML file listing the sources; empty means none (WEFT_TOOL_SOURCES)."""
    discovery_ttl_s: float = 3600.0
    """How long a discovery is reused before the source is asked again (WEFT_DISCOVERY_TTL_S)."""
    discovery_cache_dir: str = ""
    """Folder of the local discovery cache, used when Blob Storage is not configured (WEFT_DISCOVERY_CACHE_DIR);
    empty means ``<WEFT_STATE_DIR>/discovery`` (see :meth:`discovery_folder`)."""
    discovery_timeout_s: float = 60.0
    """Longest one source's discovery may take at start-up (WEFT_DISCOVERY_TIMEOUT_S)."""
    network: NetworkPolicy = field(default_factory=NetworkPolicy)
    """SSRF policy (WEFT_ALLOW_PRIVATE_NETWORK, WEFT_ALLOWED_HOSTS)."""
    openapi: OpenApiSettings = field(default_factory=OpenApiSettings)
    """OpenAPI limits (WEFT_OPENAPI_*)."""
    mcp: McpSettings = field(default_factory=McpSettings)
    """MCP client settings (WEFT_MCP_*)."""
    registry_container: str = "weft-sources"
    """Blob container of the source registry, when Blob Storage is configured (WEFT_SOURCE_REGISTRY_CONTAINER)."""
    secret_bindings: SecretBindings = field(default_factory=SecretBindings)
    """Secrets sources may use and where to (WEFT_SECRET_BINDINGS)."""
    registry_refresh_s: float = 30.0
    """How often an instance checks the source registry for sources registered elsewhere
    (WEFT_SOURCE_REGISTRY_REFRESH_S); a tool missing from the catalog triggers a check at once."""

    def discovery_folder(self, state_dir: str | Path) -> Path:
        """The local discovery cache folder: ``discovery_cache_dir``, else ``<state_dir>/discovery``."""
        return Path(self.discovery_cache_dir) if self.discovery_cache_dir else Path(state_dir) / "discovery"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SourceSettings:
        """Read the settings from ``env`` (default ``os.environ``)."""
        env = os.environ if env is None else env
        return cls(
            sources_file=env_str(env, "WEFT_TOOL_SOURCES", "").strip(),
            discovery_ttl_s=env_float(env, "WEFT_DISCOVERY_TTL_S", cls.discovery_ttl_s, minimum=0),
            discovery_cache_dir=env_str(env, "WEFT_DISCOVERY_CACHE_DIR", cls.discovery_cache_dir),
            discovery_timeout_s=env_float(env, "WEFT_DISCOVERY_TIMEOUT_S", cls.discovery_timeout_s, minimum=0.001),
            network=NetworkPolicy.from_env(env),
            openapi=OpenApiSettings.from_env(env),
            mcp=McpSettings.from_env(env),
            registry_container=env_str(env, "WEFT_SOURCE_REGISTRY_CONTAINER", cls.registry_container),
            registry_refresh_s=env_float(env, "WEFT_SOURCE_REGISTRY_REFRESH_S", cls.registry_refresh_s, minimum=0),
            secret_bindings=SecretBindings.parse(env_str(env, "WEFT_SECRET_BINDINGS", "")),
        )


# ------------------------------------------------------------------------------------------------------- configs


class AuthConfig(BaseModel):
    """An auth header whose value is a named secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: str = Field(min_length=1)
    """Name of the secret holding the credential (never the credential itself)."""
    header: str = Field("Authorization", min_length=1)
    """Header to send."""
    scheme: str | None = "Bearer"
    """Value prefix; ``null`` sends the secret as it is."""

    def http_auth(self, allowed_hosts: tuple[str, ...]) -> HttpAuth:
        """As the transports' :class:`HttpAuth`, sent only to ``allowed_hosts``."""
        return HttpAuth(secret=self.secret, header=self.header, scheme=self.scheme or None, allowed_hosts=allowed_hosts)


class OpenApiSourceConfig(BaseModel):
    """An OpenAPI 3 document: each operation becomes a tool."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["openapi"]
    url: str | None = Field(None, max_length=2048)
    """Where to fetch the document (http/https)."""
    path: str | None = Field(None, max_length=1024)
    """Or a local file."""
    base_url: str | None = Field(None, max_length=2048)
    """Overrides the document's ``servers[0].url``."""
    auth: AuthConfig | None = None
    """Auth header sent with every call."""
    alias: str | None = Field(None, pattern=ALIAS_PATTERN)
    """Prefix of the tool names (``alias.operationId``)."""
    timeout_s: float | None = Field(None, gt=0)
    """Per-call timeout of these tools (default: the executor's)."""

    @model_validator(mode="after")
    def _one_location(self) -> OpenApiSourceConfig:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of url or path")
        return self

    def location(self) -> str:
        """The URL or path of the document."""
        return self.url or self.path or ""


class McpSourceConfig(BaseModel):
    """An MCP server: each of its tools becomes a tool."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["mcp"]
    transport: Literal["stdio", "http"]
    command: str | None = Field(None, max_length=1024)
    """Executable to start (stdio)."""
    args: list[str] = Field(default_factory=list)
    """Its arguments (stdio)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment variables (stdio)."""
    secret_env: dict[str, str] = Field(default_factory=dict)
    """Environment variables set from named secrets: ``{"API_TOKEN": "secret-name"}`` (stdio)."""
    cwd: str | None = None
    """Working directory (stdio)."""
    url: str | None = Field(None, max_length=2048)
    """Endpoint (http)."""
    auth: AuthConfig | None = None
    """Auth header (http)."""
    alias: str | None = Field(None, pattern=ALIAS_PATTERN)
    """Prefix of the tool names (``alias.tool``)."""
    timeout_s: float | None = Field(None, gt=0)
    """Per-call timeout of these tools (default: the executor's)."""

    @model_validator(mode="after")
    def _fits_transport(self) -> McpSourceConfig:
        if self.transport == "stdio":
            if not self.command:
                raise ValueError("a stdio MCP source needs a command")
            if self.url or self.auth:
                raise ValueError("url and auth are for http MCP sources")
        else:
            if not self.url:
                raise ValueError("an http MCP source needs a url")
            if self.command or self.args or self.env or self.secret_env or self.cwd:
                raise ValueError("command, args, env, secret_env and cwd are for stdio MCP sources")
        return self

    def location(self) -> str:
        """The URL, or the command's name (arguments may hold anything, so they are left out)."""
        return self.url or Path(self.command or "").name

    def server_params(self, allowed_hosts: tuple[str, ...] = ()) -> McpServerParams:
        """As :class:`McpServerParams`; the auth secret goes only to ``allowed_hosts``."""
        return McpServerParams(
            transport=self.transport, command=self.command or "", args=tuple(self.args), env=dict(self.env),
            secret_env=dict(self.secret_env), cwd=self.cwd, url=self.url or "",
            auth=self.auth.http_auth(allowed_hosts) if self.auth else None,
        )


SourceConfig = Annotated[OpenApiSourceConfig | McpSourceConfig, Field(discriminator="type")]


class _SourceEntry(RootModel[SourceConfig]):
    pass


def parse_source(data: Any, *, field: str = "source", base_dir: Path | None = None) -> SourceConfig:
    """Validate one source entry (:class:`InvalidRequest` naming the field); relative paths resolve in ``base_dir``."""
    config = parse_model(_SourceEntry, data, field=field).root
    if base_dir is None:
        return config
    if isinstance(config, OpenApiSourceConfig) and config.path and not Path(config.path).is_absolute():
        return config.model_copy(update={"path": str(base_dir / config.path)})
    if isinstance(config, McpSourceConfig) and config.cwd and not Path(config.cwd).is_absolute():
        return config.model_copy(update={"cwd": str(base_dir / config.cwd)})
    return config


def source_id(config: SourceConfig) -> str:
    """sha256 of the canonical JSON of the configuration: the cache key of its discoveries."""
    return hashlib.sha256(canonical_json(config.model_dump(mode="json")).encode("utf-8")).hexdigest()


def read_sources_file(path: str | Path) -> list[Any]:
    """The raw entries of a sources file (JSON by extension, else YAML); :class:`NotConfigured` if unreadable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise NotConfigured(f"WEFT_TOOL_SOURCES file {path} cannot be read: {exc}", field="WEFT_TOOL_SOURCES") from None
    if isinstance(data, Mapping) and set(data) == {"sources"}:
        data = data["sources"]
    if data is None:
        return []
    if not isinstance(data, list):
        raise NotConfigured(f"{path}: expected a list of sources or {{sources: [...]}}", field="WEFT_TOOL_SOURCES")
    return data
