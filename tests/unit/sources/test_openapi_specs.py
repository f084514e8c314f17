"""OpenAPI documents to tool specs: names, descriptions, merged parameters, $ref inlining, 3.0 quirks, methods."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.errors import InvalidRequest
from shared.models import NAME_PATTERN
from shared.sources.openapi import load_document, openapi_tools, parse_document, safe_tool_name, tool_name
from shared.sources.ssrf import SsrfGuard
from tests.fakes.openapi_server import pets_document


def doc(paths: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "servers": [{"url": "https://api.example/v1"}],
            "paths": paths, **extra}


def only(document: dict[str, Any], **options: Any) -> Any:
    [tool] = openapi_tools(document, **options)
    return tool


def by_name(document: dict[str, Any], **options: Any) -> dict[str, Any]:
    return {tool.spec.name: tool for tool in openapi_tools(document, **options)}


@pytest.mark.parametrize(
    ("operation_id", "method", "path", "alias", "expected"),
    [
        pytest.param("listPets", "GET", "/pets", None, "listPets", id="operation-id"),
        pytest.param("list pets/all", "GET", "/pets", None, "list_pets_all", id="operation-id-sanitised"),
        pytest.param("2fa.verify", "POST", "/x", None, "op_2fa.verify", id="leading-digit"),
        pytest.param(None, "GET", "/pets/{petId}/toys", None, "get_pets_petId_toys", id="method-path"),
        pytest.param(None, "DELETE", "/", None, "delete", id="root-path"),
        pytest.param("getPet", "GET", "/p", "pets", "pets.getPet", id="alias-prefix"),
        pytest.param("x" * 100, "GET", "/p", "pets", "pets." + "x" * 59, id="truncated-to-64"),
    ],
)
def test_tool_names(operation_id: str | None, method: str, path: str, alias: str | None, expected: str) -> None:
    name = tool_name(operation_id, method, path, alias=alias)
    assert name == expected
    assert re.match(NAME_PATTERN, name)


def test_safe_tool_name_never_returns_an_empty_name() -> None:
    assert safe_tool_name("///") == "tool"


@pytest.mark.parametrize(
    ("method", "side_effects", "idempotent"),
    [
        pytest.param("get", False, True, id="get"),
        pytest.param("head", False, True, id="head"),
        pytest.param("options", False, True, id="options"),
        pytest.param("put", True, True, id="put"),
        pytest.param("delete", True, True, id="delete"),
        pytest.param("post", True, False, id="post"),
        pytest.param("patch", True, False, id="patch"),
    ],
)
def test_side_effects_and_idempotency_follow_the_method(method: str, side_effects: bool, idempotent: bool) -> None:
    tool = only(doc({"/x": {method: {"operationId": "op"}}}))
    assert (tool.spec.side_effects, tool.spec.idempotent) == (side_effects, idempotent)
    assert tool.spec.source == "openapi"
    assert tool.binding["method"] == method.upper()


def test_the_pets_document_becomes_one_tool_per_operation() -> None:
    tools = by_name(pets_document("http://pets.example"), alias="pets")
    assert sorted(tools) == sorted(
        f"pets.{name}" for name in (
            "listPets", "createPet", "importPets", "getPet", "deletePet", "getFile", "broken", "busy", "whoami",
            "readme", "big", "moved",
        )
    )
    get_pet = tools["pets.getPet"]
    assert get_pet.spec.description == "Get a pet.\n\nReturns one pet by id."
    assert get_pet.spec.tags == ["pets"]
    assert get_pet.spec.parameters == {
        "type": "object",
        "properties": {"petId": {"type": "integer", "description": "Pet id."}},  # path-level $ref parameter
        "required": ["petId"],
        "additionalProperties": False,
    }
    assert get_pet.binding["server"] == "http://pets.example/api"


def test_a_flat_json_body_merges_into_the_arguments_without_read_only_properties() -> None:
    create = by_name(pets_document("http://pets.example"))["createPet"]
    params = create.spec.parameters
    assert set(params["properties"]) == {"name", "tag", "owner"}  # "id" is readOnly
    assert params["required"] == ["name"]
    assert params["properties"]["tag"] == {"type": ["string", "null"]}  # OpenAPI 3.0 nullable
    assert create.binding["body"] == {"mode": "flat", "content_type": "application/json"}


def test_recursive_refs_are_cut_at_the_cycle_with_an_explanation() -> None:
    create = by_name(pets_document("http://pets.example"))["createPet"]
    owner = create.spec.parameters["properties"]["owner"]
    inner = owner["properties"]["pets"]["items"]
    assert inner == {"description": "Pet (nested too deeply to describe; any value)"}
    assert "$ref" not in json.dumps(create.spec.parameters)


def test_the_ref_depth_limit_applies_to_long_non_recursive_chains() -> None:
    schemas = {f"S{i}": {"type": "object", "properties": {"next": {"$ref": f"#/components/schemas/S{i + 1}"}}}
               for i in range(6)}
    schemas["S6"] = {"type": "string"}
    body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/S0"}}}}
    document = doc({"/x": {"post": {"operationId": "op", "requestBody": body}}}, components={"schemas": schemas})
    node = only(document, max_ref_depth=3).spec.parameters  # S0 (flattened into the arguments), S1, S2, then cut
    for _ in range(3):
        node = node["properties"]["next"]
    assert node == {"description": "S3 (nested too deeply to describe; any value)"}
    deep = only(document, max_ref_depth=10).spec.parameters
    assert "S6" not in json.dumps(deep) and '"type": "string"' in json.dumps(deep)


def test_a_body_that_is_not_an_object_or_clashes_travels_under_body() -> None:
    importer = by_name(pets_document("http://pets.example"))["importPets"]
    assert importer.spec.parameters["required"] == ["body"]
    assert importer.spec.parameters["properties"]["body"]["type"] == "array"
    assert importer.binding["body"] == {"mode": "nested", "content_type": "application/json", "arg": "body"}
    clash = only(doc({"/items/{id}": {"put": {
        "operationId": "put",
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "requestBody": {"content": {"application/json": {"schema": {
            "type": "object", "properties": {"id": {"type": "string"}, "v": {"type": "integer"}}}}}},
    }}}))
    assert set(clash.spec.parameters["properties"]) == {"id", "body"}
    assert clash.binding["body"]["mode"] == "nested"


def test_header_parameters_skip_reserved_and_auth_headers_and_cookies_are_not_offered() -> None:
    operation = {"operationId": "op", "parameters": [
        {"name": "Authorization", "in": "header", "schema": {"type": "string"}},
        {"name": "X-Api-Key", "in": "header", "schema": {"type": "string"}},
        {"name": "X-Trace", "in": "header", "required": True, "schema": {"type": "string"}},
        {"name": "session", "in": "cookie", "schema": {"type": "string"}},
    ]}
    tool = only(doc({"/x": {"get": operation}}), exclude_headers=frozenset({"x-api-key"}))
    assert tool.spec.parameters["properties"] == {"X-Trace": {"type": "string"}}
    assert tool.spec.parameters["required"] == ["X-Trace"]
    assert tool.binding["params"] == [{"name": "X-Trace", "in": "header", "arg": "X-Trace"}]


def test_same_named_parameters_in_two_places_get_distinct_arguments() -> None:
    tool = only(doc({"/x/{id}": {"get": {"operationId": "op", "parameters": [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "id", "in": "query", "schema": {"type": "integer"}},
    ]}}}))
    assert set(tool.spec.parameters["properties"]) == {"id", "query_id"}
    assert {p["arg"]: p["in"] for p in tool.binding["params"]} == {"id": "path", "query_id": "query"}


def test_openapi_30_exclusive_bounds_become_json_schema_numbers() -> None:
    schema = {"type": "integer", "minimum": 1, "exclusiveMinimum": True, "maximum": 9, "exclusiveMaximum": False}
    parameters = [{"name": "n", "in": "query", "schema": schema}]
    tool = only(doc({"/x": {"get": {"operationId": "op", "parameters": parameters}}}))
    assert tool.spec.parameters["properties"]["n"] == {"type": "integer", "exclusiveMinimum": 1, "maximum": 9}


def test_operations_that_cannot_be_offered_are_skipped_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    form = {"required": True, "content": {"multipart/form-data": {"schema": {"type": "object"}}}}
    document = doc({
        "/upload": {"post": {"operationId": "upload", "requestBody": form}},
        "/ext": {"get": {"operationId": "ext", "parameters": [{"$ref": "other.yaml#/p"}]}},
        "/ok": {"get": {"operationId": "ok"}},
    })
    assert list(by_name(document)) == ["ok"]
    assert "upload" in caplog.text or "POST /upload" in caplog.text
    assert "external $ref" in caplog.text


def test_duplicate_names_get_a_suffix() -> None:
    document = doc({"/a": {"get": {"operationId": "same"}}, "/b": {"get": {"operationId": "same"}}})
    assert sorted(by_name(document)) == ["same", "same_2"]


@pytest.mark.parametrize(
    ("servers", "document_url", "expected"),
    [
        pytest.param([{"url": "https://api.example/v1"}], None, "https://api.example/v1", id="absolute"),
        pytest.param([{"url": "/v2"}], "https://docs.example/s/openapi.json", "https://docs.example/v2", id="relative"),
        pytest.param(
            [{"url": "https://{region}.api.example/{v}",
              "variables": {"region": {"default": "eu"}, "v": {"default": "v3"}}}],
            None, "https://eu.api.example/v3", id="variables",
        ),
        pytest.param(None, "https://docs.example/openapi.json", "https://docs.example/", id="none-given"),
    ],
)
def test_server_urls(servers: Any, document_url: str | None, expected: str) -> None:
    document = {**doc({"/x": {"get": {"operationId": "op"}}}), "servers": servers}
    assert only(document, document_url=document_url).binding["server"] == expected


def test_an_operation_level_server_wins() -> None:
    document = doc({"/x": {"get": {"operationId": "op", "servers": [{"url": "https://other.example"}]}}})
    assert only(document).binding["server"] == "https://other.example"


def test_descriptions_fall_back_to_method_and_path_and_mark_deprecation() -> None:
    tools = by_name(doc({"/x": {"get": {"operationId": "plain"}, "put": {"operationId": "old", "deprecated": True,
                                                                     "summary": "Old way."}}}))
    assert tools["plain"].spec.description == "GET /x"
    assert tools["old"].spec.description == "(deprecated) Old way."


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        pytest.param(b'{"swagger": "2.0"}', "Swagger 2.0 is not supported", id="swagger"),
        pytest.param(b"openapi: 2.0\n", "not an OpenAPI 3 document", id="old-version"),
        pytest.param(b"- a\n- b\n", "is an object", id="not-an-object"),
        pytest.param(b"{broken", "not valid JSON or YAML", id="syntax"),
    ],
)
def test_documents_that_are_not_openapi_3_are_refused(raw: bytes, problem: str) -> None:
    with pytest.raises(InvalidRequest, match=problem):
        parse_document(raw)


def test_documents_load_from_json_and_yaml_files(tmp_path: Path) -> None:
    document = pets_document("http://pets.example")
    (tmp_path / "pets.json").write_text(json.dumps(document))
    (tmp_path / "pets.yaml").write_text(yaml.safe_dump(document))
    guard = SsrfGuard()
    assert asyncio.run(load_document(str(tmp_path / "pets.json"), guard=guard)) == document
    assert asyncio.run(load_document(str(tmp_path / "pets.yaml"), guard=guard)) == document
    with pytest.raises(InvalidRequest, match="cannot read OpenAPI document"):
        asyncio.run(load_document(str(tmp_path / "missing.yaml"), guard=guard))


def test_a_document_url_with_another_scheme_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="scheme 'file' is not allowed"):
        asyncio.run(load_document("file:///etc/passwd", guard=SsrfGuard()))
