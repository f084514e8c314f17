"""Tool schemas: JSON schema from a Python function's type hints and docstring, argument checking against a
schema (errors that name the field), and Python stubs of tools for code-writing models."""

from __future__ import annotations

import copy
import functools
import inspect
import json
import keyword
import re
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jsonschema import validators as jsonschema_validators
from pydantic import BaseModel, ConfigDict, Field, create_model

from shared.errors import QUOTED_CHARS, InvalidRequest, quoted, quoted_list
from shared.models import ToolSpec, canonical_json, format_field
from shared.suggestions import close_matches

__all__ = ["ArgumentProblem", "FunctionSchema", "argument_problems", "function_schema", "inline_refs",
           "parse_docstring", "python_identifier", "render_stub", "resolve_pointer", "schema_validator"]

IDEMPOTENCY_PARAMETER = "idempotency_key"
"""A tool function declaring a parameter with this name receives the call's idempotency key there."""
_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Keyword Args|Returns?|Yields?|Raises|Examples?|Notes?|Attributes|"
    r"See Also|Warnings?|Todo|References):\s*$"
)
_ARG_LINE = re.compile(r"^\**(?P<name>\w+)\s*(\([^)]*\))?\s*:\s*(?P<text>.*)$")
_SHAPE_VALIDATORS = frozenset(
    {"type", "required", "additionalProperties", "minProperties", "maxProperties", "minItems", "maxItems",
     "propertyNames", "dependentRequired"}
)


# ------------------------------------------------------------------------------------------ schema from functions


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its description and its ``Args:`` descriptions by parameter name."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    description: list[str] = []
    params: dict[str, str] = {}
    index = 0
    while index < len(lines) and not _SECTION.match(lines[index]):
        description.append(lines[index])
        index += 1
    while index < len(lines):
        header = _SECTION.match(lines[index])
        index += 1
        if not header or header.group(1) not in {"Args", "Arguments", "Parameters", "Params", "Keyword Args"}:
            continue
        base: int | None = None
        current: str | None = None
        while index < len(lines):
            line = lines[index]
            if line.strip() and (indent := len(line) - len(line.lstrip())) == 0:
                break
            index += 1
            if not line.strip():
                continue
            base = indent if base is None else base
            match = _ARG_LINE.match(line.strip())
            if indent == base and match:
                current = match.group("name")
                params[current] = match.group("text").strip()
            elif current is not None:
                params[current] = f"{params[current]} {line.strip()}".strip()
    return "\n".join(description).strip(), params


@dataclass(frozen=True)
class FunctionSchema:
    """What :func:`function_schema` derives from a function."""

    description: str
    """The docstring's description (everything before its first section)."""
    parameters: dict[str, Any]
    """JSON schema of the arguments object."""
    model: type[BaseModel]
    """Pydantic model that validates and converts arguments (field aliases are the parameter names)."""


def _strip_titles(node: Any, *, names: bool = False) -> Any:
    """Drop pydantic's generated ``title`` keys; ``names`` marks a mapping of property names (kept as they are)."""
    if isinstance(node, dict):
        return {
            key: _strip_titles(value, names=not names and key in {"properties", "$defs", "patternProperties"})
            for key, value in node.items()
            if names or key != "title" or not isinstance(value, str)
        }
    if isinstance(node, list):
        return [_strip_titles(item) for item in node]
    return node


def resolve_pointer(document: Any, ref: str) -> Any:
    """What a local ``$ref`` (``#`` or ``#/a/b``, with JSON Pointer's ``~0``/``~1`` escapes) points at in
    ``document``; :class:`InvalidRequest` for an external reference or one that points at nothing."""
    if ref == "#":
        return document
    if not ref.startswith("#/"):
        raise InvalidRequest(f"external $ref {ref!r} is not supported")
    node: Any = document
    for escaped in ref[2:].split("/"):
        part = escaped.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            raise InvalidRequest(f"$ref {ref!r} points at nothing")
    return node


def inline_refs(
    schema: Any, *, document: Any = None, max_depth: int | None = None, placeholder: Callable[[str], Any] | None = None
) -> Any:
    """``schema`` with every ``$ref`` replaced by a copy of what it points at (keys beside a ``$ref`` win over its
    target's): LLMs read flat schemas better. ``document`` (default: ``schema`` itself) is what ``#/...`` pointers
    resolve against; the ``$defs``/``definitions`` of ``schema`` itself are dropped once inlined.

    A reference met again inside its own expansion (recursion), or nested more than ``max_depth`` references deep,
    is not expanded: ``placeholder(ref)`` takes its place when given; otherwise it stays a reference, to
    ``#/$defs/<name>``, and the result carries those definitions under ``$defs`` (a self-contained JSON schema).
    Raises :class:`InvalidRequest` for an external reference or one that points at nothing.
    """
    root = schema if document is None else document
    kept: dict[str, str] = {}  # ref -> its name under the result's $defs

    def keep(ref: str) -> str:
        if ref not in kept:
            base = ref.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~") or "root"
            name, number = base, 2
            while name in kept.values():
                name, number = f"{base}_{number}", number + 1
            kept[ref] = name
        return "#/$defs/" + kept[ref].replace("~", "~0").replace("/", "~1")

    def visit(node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [visit(item, stack) for item in node]
        if not isinstance(node, Mapping):
            return node
        ref = node.get("$ref")
        if not isinstance(ref, str):
            return {key: visit(value, stack) for key, value in node.items()}
        siblings = {key: visit(value, stack) for key, value in node.items() if key != "$ref"}
        if ref in stack or (max_depth is not None and len(stack) >= max_depth):
            if placeholder is not None:
                return {**placeholder(ref), **siblings}
            return {"$ref": ref if ref == "#" else keep(ref), **siblings}
        target = visit(resolve_pointer(root, ref), (*stack, ref))
        return {**target, **siblings} if isinstance(target, Mapping) else target

    top = dict(schema) if isinstance(schema, Mapping) and document is None else schema
    if isinstance(top, dict):
        top.pop("$defs", None)
        top.pop("definitions", None)
    out = visit(top, ())
    definitions: dict[str, Any] = {}
    while len(definitions) < len(kept):  # a definition may keep references of its own
        ref = next(ref for ref in kept if kept[ref] not in definitions)
        definitions[kept[ref]] = visit(resolve_pointer(root, ref), (ref,))
    if definitions and isinstance(out, dict):
        out["$defs"] = dict(sorted(definitions.items()))
    return out


def function_schema(fn: Callable[..., Any]) -> FunctionSchema:
    """Build the arguments' JSON schema and pydantic model of ``fn`` from its signature, hints and docstring."""
    try:
        built = _cached_function_schema(fn)
    except TypeError as exc:
        if "unhashable" not in str(exc):
            raise
        built = _build_function_schema(fn)
    return FunctionSchema(built.description, copy.deepcopy(built.parameters), built.model)


@functools.lru_cache(maxsize=1024)
def _cached_function_schema(fn: Callable[..., Any]) -> FunctionSchema:
    # Building the pydantic model takes milliseconds; every catalog of a process registers the same functions.
    return _build_function_schema(fn)


def _build_function_schema(fn: Callable[..., Any]) -> FunctionSchema:
    signature = inspect.signature(fn)
    hints = typing.get_type_hints(fn, include_extras=True)
    description, docs = parse_docstring(inspect.getdoc(fn))
    fields: dict[str, Any] = {}
    extra: Literal["allow", "forbid"] = "forbid"
    for position, param in enumerate(signature.parameters.values()):
        if param.kind is param.VAR_KEYWORD:
            extra = "allow"
            continue
        if param.kind is param.VAR_POSITIONAL or param.name == IDEMPOTENCY_PARAMETER:
            continue
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"tool function {fn.__qualname__}: positional-only parameter {param.name!r} is not allowed")
        default = ... if param.default is param.empty else param.default
        annotation = hints.get(param.name, Any)
        fields[f"p{position}"] = (annotation, Field(default, alias=param.name, description=docs.get(param.name)))
    model = create_model(
        f"{getattr(fn, '__name__', 'tool')}_arguments",
        __config__=ConfigDict(extra=extra, populate_by_name=False, arbitrary_types_allowed=False),
        **fields,
    )
    try:
        raw = model.model_json_schema(by_alias=True)
    except Exception as exc:  # pydantic raises several types for unsupported hints and defaults
        raise TypeError(f"tool function {fn.__qualname__}: cannot build a JSON schema: {exc}") from exc
    parameters = inline_refs(_strip_titles(raw))
    parameters.setdefault("properties", {})
    return FunctionSchema(description=description, parameters=parameters, model=model)


# ----------------------------------------------------------------------------------------- argument checking


@dataclass(frozen=True)
class ArgumentProblem:
    """One way an arguments object does not match its schema."""

    path: tuple[str | int, ...]
    """Where, inside the arguments (``("items", 0, "name")``); empty for the object itself."""
    message: str
    """What is wrong, phrased for the caller."""

    def field(self, prefix: str = "args") -> str:
        """The path as a field name: ``args.items[0].name``."""
        return format_field([prefix, *self.path])


@functools.lru_cache(maxsize=1024)
def _validator(schema_json: str) -> Any:
    schema = json.loads(schema_json)
    cls = jsonschema_validators.validator_for(schema, default=jsonschema_validators.Draft202012Validator)
    return cls(schema)


def schema_validator(schema: Mapping[str, Any]) -> Any:
    """The JSON Schema validator of ``schema`` (shared by equal schemas), for :func:`argument_problems`."""
    return _validator(canonical_json(dict(schema)))


def _under(path: tuple[Any, ...], prefix: tuple[Any, ...]) -> bool:
    return path[: len(prefix)] == prefix


def argument_problems(
    schema: Mapping[str, Any], args: Any, *, opaque: Iterable[tuple[str | int, ...]] = (), validator: Any = None
) -> list[ArgumentProblem]:
    """Every problem with ``args`` under ``schema``, in a stable order.

    ``opaque`` paths hold values not known yet (``$ref`` placeholders in a plan): errors at or inside them are
    ignored, and so are errors at their ancestors unless they concern only the shape (missing or unexpected keys,
    wrong container type, sizes). ``validator``: :func:`schema_validator` of ``schema``, when the caller keeps it.
    """
    opaque = tuple(opaque)
    if validator is None:
        validator = schema_validator(schema)
    problems: list[ArgumentProblem] = []
    for error in (leaf for top in validator.iter_errors(args) for leaf in _leaves(top)):
        path = tuple(error.absolute_path)
        if any(_under(path, hole) for hole in opaque):
            continue
        if error.validator not in _SHAPE_VALIDATORS and any(_under(hole, path) for hole in opaque):
            continue
        problems.append(_describe(error, path))
    return problems


def _leaves(error: Any) -> Iterator[Any]:
    """An ``anyOf``/``oneOf`` error whose value has the type of exactly one branch becomes that branch's errors
    (``list[Point] | None`` given a list reports the bad item, not "not valid under any of the given schemas")."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        branches: dict[Any, list[Any]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        here = tuple(error.absolute_path)
        typed = [
            subs
            for subs in branches.values()
            if not any(sub.validator == "type" and tuple(sub.absolute_path) == here for sub in subs)
        ]
        if len(typed) == 1:
            for sub in typed[0]:
                yield from _leaves(sub)
            return
    yield error


def _describe(error: Any, path: tuple[Any, ...]) -> ArgumentProblem:
    instance = error.instance
    if error.validator == "required" and isinstance(instance, Mapping):
        missing = [name for name in error.validator_value if name not in instance]
        named = [name for name in missing if error.message.startswith(repr(name))] or missing
        if named:
            return ArgumentProblem((*path, named[0]), f"missing required argument {quoted(named[0])}")
    if error.validator == "additionalProperties" and isinstance(instance, Mapping):
        allowed = sorted(error.schema.get("properties", {}))
        known = set(allowed)
        unexpected = sorted(key for key in instance if key not in known)
        if unexpected:
            hint = close_matches(unexpected[0], allowed, n=1)
            message = f"unexpected argument {quoted(unexpected[0])}"
            message += f"; did you mean {quoted(hint[0])}?" if hint else ""
            message += f" (allowed: {quoted_list(allowed)})" if allowed else " (this tool takes no arguments)"
            return ArgumentProblem((*path, unexpected[0]), message)
    return ArgumentProblem(path, _short_instance(error.message, error.instance))


def _short_instance(message: str, instance: Any) -> str:
    """jsonschema's ``message`` with its quote of the argument's value cut as :func:`~shared.errors.quoted` cuts."""
    shown = repr(instance)
    return message.replace(shown, shown[:QUOTED_CHARS] + "…", 1) if len(shown) > QUOTED_CHARS else message


def python_identifier(name: str) -> str:
    """A Python identifier for a tool or parameter name: ``weather.get`` -> ``weather_get``, ``class`` -> ``class_``."""
    ident = re.sub(r"\W", "_", name)
    if not ident or ident[0].isdigit():
        ident = f"_{ident}"
    return f"{ident}_" if keyword.iskeyword(ident) else ident


# ------------------------------------------------------------------------------------------------ python stubs

_STUB_WIDTH = 100
_JSON_TO_PY = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}


def _py_type(schema: Any) -> str:
    if not isinstance(schema, Mapping) or not schema:
        return "Any"
    if "enum" in schema or "const" in schema:
        values = schema.get("enum", [schema.get("const")])
        return "Literal[" + ", ".join(repr(value) for value in values) + "]"
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            parts = list(dict.fromkeys(_py_type(option) for option in schema[combinator]))
            if "None" in parts:  # X | None reads better last
                parts = [*(part for part in parts if part != "None"), "None"]
            return " | ".join(parts)
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(_py_type({**schema, "type": one}) for one in kind)
    if kind == "array":
        return f"list[{_py_type(schema.get('items'))}]"
    if kind == "object" or "$ref" in schema:
        return "dict[str, Any]"
    return _JSON_TO_PY.get(kind, "Any") if isinstance(kind, str) else "Any"


def render_stub(spec: ToolSpec) -> str:
    properties: Mapping[str, Any] = spec.parameters.get("properties", {})
    required = set(spec.parameters.get("required", []))
    ordered = sorted(properties, key=lambda name: name not in required)  # stable: required first
    params: list[str] = []
    docs: list[str] = []
    for name in ordered:
        prop = properties[name] if isinstance(properties[name], Mapping) else {}
        annotation = _py_type(prop)
        text = f"{python_identifier(name)}: {annotation}"
        if name not in required:
            if "default" in prop:
                text += f" = {prop['default']!r}"
            else:
                text = f"{text} | None = None" if "None" not in annotation.split(" | ") else f"{text} = None"
        params.append(text)
        if prop.get("description"):
            docs.append(f"{python_identifier(name)}: {' '.join(str(prop['description']).split())}")
    body = [_doc_safe(line.rstrip()) for line in (spec.description or spec.name).splitlines()]
    if docs:
        body += ["", "Args:", *(f"    {_doc_safe(line)}" for line in docs)]
    head = f"async def {python_identifier(spec.name)}({', '.join(params)}) -> Any:"
    if len(head) > _STUB_WIDTH:
        head = "\n".join([f"async def {python_identifier(spec.name)}(", *(f"    {p}," for p in params), ") -> Any:"])
    lines = [head, f'    """{body[0]}']
    lines += [f"    {line}" if line else "" for line in body[1:]]
    return "\n".join([*lines, '    """', ""])


def _doc_safe(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', "'''")

