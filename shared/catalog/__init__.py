"""The tool catalog: specs, schemas and transports. The executor and circuit breaker (I/O) live beside it in
:mod:`shared.catalog.executor` and :mod:`shared.catalog.breaker`, imported by their own paths."""

from shared.catalog.catalog import Catalog, PythonTransport, Tool, ToolTransport, python_tool, tool
from shared.catalog.schema import (
    argument_problems,
    function_schema,
    inline_refs,
    python_identifier,
    render_stub,
    resolve_pointer,
)

__all__ = [
    "Catalog",
    "PythonTransport",
    "Tool",
    "ToolTransport",
    "argument_problems",
    "function_schema",
    "inline_refs",
    "python_identifier",
    "python_tool",
    "render_stub",
    "resolve_pointer",
    "tool",
]
