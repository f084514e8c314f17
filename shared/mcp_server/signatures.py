"""Tools as an agent reads them over MCP: a compact one-line signature per search hit, the full schema on request.

A signature names the Python function code mode calls and its arguments with their types, e.g.
``convert_units(value: float, from_unit: str, to_unit: str, precision?: int) -> Convert between units.``; the
full description (``describe``) adds the JSON schema, the Python stub and how the tool may be called.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.catalog.schema import python_identifier, render_stub
from shared.models import ToolSpec

__all__ = ["compact_signature", "describe", "one_line"]

_ONE_LINE_CHARS = 120
_ENUM_SHOWN = 4
_SIMPLE = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None",
           "array": "list", "object": "dict"}


def one_line(text: str, limit: int = _ONE_LINE_CHARS) -> str:
    """The first sentence (or line) of ``text``, at most ``limit`` characters."""
    first = " ".join((text or "").strip().splitlines()[0].split()) if (text or "").strip() else ""
    end = first.find(". ")
    if 0 < end < limit:
        first = first[: end + 1]
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def _type_name(schema: Any) -> str:
    if not isinstance(schema, Mapping):
        return "Any"
    if "enum" in schema and isinstance(schema["enum"], list):
        values = [repr(v) for v in schema["enum"][:_ENUM_SHOWN]]
        return "|".join(values) + ("|…" if len(schema["enum"]) > _ENUM_SHOWN else "")
    for combinator in ("anyOf", "oneOf"):
        if isinstance(schema.get(combinator), list):
            return "|".join(dict.fromkeys(_type_name(option) for option in schema[combinator]))
    kind = schema.get("type")
    if isinstance(kind, list):
        return "|".join(_SIMPLE.get(str(k), "Any") for k in kind)
    if kind == "array" and isinstance(schema.get("items"), Mapping):
        return f"list[{_type_name(schema['items'])}]"
    return _SIMPLE.get(str(kind), "Any") if kind else "Any"


def compact_signature(spec: ToolSpec) -> str:
    """``name(required: type, optional?: type) -> one line of description``: what a search answer lists."""
    properties: Mapping[str, Any] = spec.parameters.get("properties") or {}
    required = set(spec.parameters.get("required") or [])
    ordered = sorted(properties, key=lambda name: name not in required)
    args = ", ".join(f"{python_identifier(name)}{'' if name in required else '?'}: {_type_name(properties[name])}"
                     for name in ordered)
    marks = "".join([" [side effects]" if spec.side_effects else "",
                     " [needs approval]" if spec.requires_approval else ""])
    summary = one_line(spec.description)
    return f"{python_identifier(spec.name)}({args})" + (f" -> {summary}" if summary else "") + marks


def describe(spec: ToolSpec) -> dict[str, Any]:
    """The full description of one tool: its catalog name, the Python stub code mode calls, the JSON schema of its
    arguments and how it may be called (side effects, approval, idempotence)."""
    return {
        "name": spec.name,
        "call_as": python_identifier(spec.name),
        "stub": render_stub(spec),
        "parameters": spec.parameters,
        "side_effects": spec.side_effects,
        "requires_approval": spec.requires_approval,
        "idempotent": spec.idempotent,
    }
