"""Reading OpenAI-shaped specs into the searchable view of a tool."""

from __future__ import annotations

from typing import Any

import pytest

from shared.search.document import NAME_WEIGHT, ToolDocument, humanize_identifier

SPEC = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name"},
            "units": {"type": "string", "enum": ["metric", "imperial"]},
            "location": {"type": "object", "properties": {"lat": {"description": "Latitude"}}},
        },
    },
    "tags": ["weather", "demo"],
    "source": "open-meteo",
}


@pytest.mark.parametrize(
    "spec",
    [SPEC, {"type": "function", "function": SPEC}],
    ids=["plain", "function-wrapper"],
)
def test_from_spec_reads_both_openai_shapes(spec: dict[str, Any]) -> None:
    doc = ToolDocument.from_spec(spec)
    assert doc.name == "get_weather"
    assert doc.description == "Current weather for a city."
    assert doc.tags == frozenset({"weather", "demo"})
    assert doc.source == "open-meteo"
    assert [name for name, _ in doc.parameters] == ["city", "units", "location", "location.lat"]
    assert dict(doc.parameters)["units"] == "one of metric, imperial"


@pytest.mark.parametrize(
    "spec",
    [{"description": "no name"}, {"name": "  "}, {"type": "function", "function": {"description": "x"}}],
    ids=["missing", "blank", "wrapper-missing"],
)
def test_spec_without_a_name_is_rejected(spec: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="no name"):
        ToolDocument.from_spec(spec)


def test_minimal_spec_and_string_tag() -> None:
    doc = ToolDocument.from_spec({"name": "ping", "tags": "net"})
    assert (doc.description, doc.parameters, doc.tags, doc.source) == ("", (), frozenset({"net"}), "")


@pytest.mark.parametrize("key", ["input_schema", "inputSchema"], ids=["anthropic", "mcp"])
def test_input_schema_is_read_as_parameters(key: str) -> None:
    doc = ToolDocument.from_spec({"name": "x", key: {"properties": {"query": {"description": "q"}}}})
    assert doc.parameters == (("query", "q"),)


def test_parameters_as_a_list_of_named_objects() -> None:
    doc = ToolDocument.from_spec({"name": "x", "parameters": [
        {"name": "city", "type": "string", "description": "City name"}, {"name": "days"}, {"type": "int"}, "junk"]})
    assert doc.parameters == (("city", "City name"), ("days", ""))


def test_rendered_text_has_words_of_the_name_and_the_parameters() -> None:
    text = ToolDocument.from_spec(SPEC).text
    assert text.startswith("get weather: Current weather for a city.")
    assert "city (City name)" in text and "location lat (Latitude)" in text


def test_terms_weight_the_name_above_the_description() -> None:
    terms = ToolDocument.from_spec(SPEC).terms
    assert ("weath", NAME_WEIGHT) in terms and ("weath", 1.0) in terms
    assert ("citi", 1.0) in terms or ("city", 1.0) in terms


@pytest.mark.parametrize(
    ("name", "expected"),
    [("getWeatherForecast", "get weather forecast"), ("s3_CreateBucket", "s3 create bucket"),
     ("weather.get-forecast", "weather get forecast"), ("HTTPServer", "http server")],
    ids=["camel", "mixed", "dotted", "acronym"],
)
def test_humanize_identifier(name: str, expected: str) -> None:
    assert humanize_identifier(name) == expected
