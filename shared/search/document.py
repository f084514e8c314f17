"""A tool as tool search sees it: name, description, parameters, tags and source, and the texts derived from them.

Built from OpenAI-shaped specs (``{"name", "description", "parameters"}`` or the
``{"type": "function", "function": {...}}`` wrapper); ``tags`` and ``source`` are optional extra keys. The
parameters may also come as Anthropic's ``input_schema`` or MCP's ``inputSchema``, and as a list of
``{"name", "description"}`` objects instead of a JSON schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from shared.search.bm25 import tokenize

__all__ = ["ToolDocument", "humanize_identifier"]

NAME_WEIGHT = 3.0
"""A word in the tool's name counts as much as three in its description."""
PARAMETER_NAME_WEIGHT = 1.0
PARAMETER_TEXT_WEIGHT = 0.5
"""Parameter descriptions are long and generic ("the ID of the ..."), so their words count half."""

_MAX_PARAMETERS = 24
_MAX_ENUM_VALUES = 12
_IDENTIFIER_BREAKS = re.compile(r"[_.\-/:]+|(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


@lru_cache(maxsize=1 << 16)
def humanize_identifier(name: str) -> str:
    """``getWeatherForecast`` / ``get_weather.forecast`` -> ``get weather forecast``."""
    return " ".join(part.lower() for part in _IDENTIFIER_BREAKS.split(name) if part)


@lru_cache(maxsize=1 << 16)
def _parameter_tokens(text: str) -> tuple[str, ...]:
    """Tokens of a parameter name or description (cached: catalogs repeat them across thousands of tools)."""
    return tuple(tokenize(text))


def _parameters_of(schema: Any) -> tuple[tuple[str, str], ...]:
    """``(name, text)`` for each property of a JSON schema, one level of nested objects flattened as ``a.b``.

    A list of ``{"name": ..., "description": ...}`` objects is read as a flat list of parameters.
    """
    if isinstance(schema, list):
        schema = {"properties": {str(p["name"]): p for p in schema if isinstance(p, Mapping) and p.get("name")}}
    if not isinstance(schema, Mapping):
        return ()
    found: list[tuple[str, str]] = []

    def visit(properties: Any, prefix: str, depth: int) -> None:
        if not isinstance(properties, Mapping):
            return
        for name, raw in properties.items():
            if len(found) >= _MAX_PARAMETERS:
                return
            prop = raw if isinstance(raw, Mapping) else {}
            parts = [str(prop.get("description") or prop.get("title") or "")]
            enum = prop.get("enum")
            if isinstance(enum, list) and enum:
                parts.append("one of " + ", ".join(str(v) for v in enum[:_MAX_ENUM_VALUES]))
            found.append((f"{prefix}{name}", " ".join(p for p in parts if p).strip()))
            if depth == 0 and isinstance(prop.get("properties"), Mapping):
                visit(prop["properties"], f"{prefix}{name}.", depth + 1)

    visit(schema.get("properties"), "", 0)
    return tuple(found)


@dataclass(frozen=True)
class ToolDocument:
    """The searchable view of one tool."""

    name: str
    """Unique tool name (what a hit returns)."""
    description: str = ""
    parameters: tuple[tuple[str, str], ...] = ()
    """``(parameter name, description and allowed values)`` pairs."""
    tags: frozenset[str] = field(default_factory=frozenset)
    source: str = ""
    """Where the tool comes from (for example an OpenAPI document or an MCP server name)."""

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ToolDocument:
        """Read an OpenAI-shaped tool spec; raises ``ValueError`` when it has no usable name."""
        body: Mapping[str, Any] = spec
        if spec.get("type") == "function" and isinstance(spec.get("function"), Mapping):
            body = spec["function"]
        name = body.get("name") or spec.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"tool spec has no name: keys are {sorted(spec)}")
        tags = body.get("tags", spec.get("tags")) or ()
        if isinstance(tags, str):
            tags = (tags,)
        source = body.get("source", spec.get("source")) or ""
        return cls(
            name=name.strip(),
            description=str(body.get("description") or ""),
            parameters=_parameters_of(
                body.get("parameters") or body.get("input_schema") or body.get("inputSchema")
            ),
            tags=frozenset(str(t) for t in tags),
            source=str(source),
        )

    @cached_property
    def text(self) -> str:
        """The rendered text that is embedded (and whose sha256 keys the embedding cache)."""
        lines = [f"{humanize_identifier(self.name)}: {self.description}".strip()]
        if self.parameters:
            rendered = "; ".join(
                f"{humanize_identifier(name)} ({text})" if text else humanize_identifier(name)
                for name, text in self.parameters
            )
            lines.append(f"Parameters: {rendered}")
        return "\n".join(lines)

    @property
    def terms(self) -> tuple[tuple[str, float], ...]:
        """Weighted BM25 terms: name, description, parameter names and parameter descriptions.

        Computed on each access, not kept: the index needs them once per build, and keeping them would cost about
        3 KB per tool (300 MB for 100k tools).
        """
        weighted: list[tuple[str, float]] = [(t, NAME_WEIGHT) for t in tokenize(self.name)]
        weighted += [(t, 1.0) for t in tokenize(self.description)]
        for name, text in self.parameters:
            weighted += [(t, PARAMETER_NAME_WEIGHT) for t in _parameter_tokens(name)]
            weighted += [(t, PARAMETER_TEXT_WEIGHT) for t in _parameter_tokens(text)]
        return tuple(weighted)
