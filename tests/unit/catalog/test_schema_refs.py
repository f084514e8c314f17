"""The one ``$ref`` walker of tool schemas (Python functions, OpenAPI documents, MCP input schemas):
:func:`inline_refs` and :func:`resolve_pointer`."""

from __future__ import annotations

import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from shared.catalog.schema import inline_refs, resolve_pointer
from shared.errors import InvalidRequest

ADDRESS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_local_definitions_are_inlined_and_dropped_and_siblings_win() -> None:
    schema = {
        "type": "object",
        "properties": {
            "home": {"$ref": "#/$defs/Address"},
            "work": {"$ref": "#/definitions/Address", "description": "Where you work."},
        },
        "$defs": {"Address": ADDRESS},
        "definitions": {"Address": {**ADDRESS, "description": "An address."}},
    }
    out = inline_refs(schema)
    assert out == {
        "type": "object",
        "properties": {"home": ADDRESS, "work": {**ADDRESS, "description": "Where you work."}},
    }
    assert "$defs" in schema and "definitions" in schema  # the input is not changed


def test_recursion_stays_a_reference_to_a_definition_the_result_carries() -> None:
    schema = {
        "type": "object",
        "properties": {"root": {"$ref": "#/definitions/Node"}},
        "definitions": {
            "Node": {"type": "object", "properties": {
                "kids": {"type": "array", "items": {"$ref": "#/definitions/Node"}},
                "tag": {"$ref": "#/definitions/Tag"},
            }},
            "Tag": {"type": "string"},
        },
    }
    out = inline_refs(schema)
    assert out["properties"]["root"]["properties"]["kids"]["items"] == {"$ref": "#/$defs/Node"}
    assert out["properties"]["root"]["properties"]["tag"] == {"type": "string"}
    assert set(out["$defs"]) == {"Node"}
    assert out["$defs"]["Node"]["properties"]["kids"]["items"] == {"$ref": "#/$defs/Node"}
    validator = Draft202012Validator(out)
    assert validator.is_valid({"root": {"kids": [{"kids": [], "tag": "a"}]}})
    assert not validator.is_valid({"root": {"kids": [{"kids": [{"tag": 3}]}]}})


def test_mutual_recursion_and_clashing_names_get_their_own_definitions() -> None:
    document: dict[str, Any] = {
        "components": {"schemas": {"A": {"type": "object", "properties": {"b": {"$ref": "#/components/x/A"}}}},
                       "x": {"A": {"type": "object", "properties": {"a": {"$ref": "#/components/schemas/A"}}}}},
    }
    out = inline_refs({"$ref": "#/components/schemas/A"}, document=document)
    assert out["properties"]["b"]["properties"]["a"] == {"$ref": "#/$defs/A"}
    assert out["$defs"]["A"]["properties"]["b"]["properties"]["a"] == {"$ref": "#/$defs/A"}
    deep = inline_refs({"$ref": "#/components/schemas/A"}, document=document, max_depth=1)
    assert deep["properties"]["b"] == {"$ref": "#/$defs/A"}  # x/A, cut first, takes the name A ...
    assert deep["$defs"]["A"]["properties"]["a"] == {"$ref": "#/$defs/A_2"}  # ... so schemas/A becomes A_2
    assert deep["$defs"]["A_2"]["properties"]["b"] == {"$ref": "#/$defs/A"}
    assert Draft202012Validator(deep).is_valid({"b": {"a": {"b": {}}}})


def test_a_placeholder_replaces_what_is_not_expanded() -> None:
    document = {"components": {"schemas": {f"S{i}": {"type": "object", "properties": {
        "next": {"$ref": f"#/components/schemas/S{i + 1}"}}} for i in range(5)}}}
    cut = inline_refs({"$ref": "#/components/schemas/S0"}, document=document, max_depth=2,
                      placeholder=lambda ref: {"description": f"{ref} cut"})
    assert cut["properties"]["next"]["properties"]["next"] == {"description": "#/components/schemas/S2 cut"}
    assert "$defs" not in cut


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        pytest.param("#", "whole", id="root"),
        pytest.param("#/a~1b/0", 1, id="slash-escape-and-index"),
        pytest.param("#/c~0d", 2, id="tilde-escape"),
    ],
)
def test_pointers(ref: str, expected: Any) -> None:
    document = {"a/b": [1], "c~d": 2}
    assert resolve_pointer(document, ref) == (document if expected == "whole" else expected)


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        pytest.param("other.yaml#/p", "external $ref", id="external"),
        pytest.param("#/nope/x", "points at nothing", id="dangling"),
        pytest.param("#/a~1b/3", "points at nothing", id="index-out-of-range"),
    ],
)
def test_bad_references_are_invalid_requests(ref: str, fragment: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(fragment)):
        inline_refs({"properties": {"x": {"$ref": ref}}}, document={"a/b": [1]})
