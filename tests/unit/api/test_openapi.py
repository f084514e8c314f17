"""The OpenAPI document covers every HTTP route the app registers, and nothing else; its schemas are valid."""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

from jsonschema import Draft202012Validator

from shared.api_description import OPERATIONS, openapi_document

ROOT = Path(__file__).resolve().parents[3]


@functools.cache
def _app_routes() -> set[tuple[str, str]]:
    # Weft's function_app.py by path, under its own module name: other tests put the devhost's test app on sys.path
    # as "function_app", and an app's get_functions() may run only once.
    spec = importlib.util.spec_from_file_location("weft_function_app_routes", ROOT / "function_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    routes = set()
    for function in module.app.get_functions():
        trigger = function.get_trigger()
        if getattr(trigger, "route", None) is None:
            continue
        for method in trigger.methods or ():
            routes.add((str(getattr(method, "value", method)).lower(), "/api/" + trigger.route))
    return routes


def test_every_registered_route_is_described_and_nothing_else() -> None:
    document = openapi_document()
    described = {(method, path) for path, item in document["paths"].items() for method in item}
    registered = _app_routes()
    assert registered, "no HTTP routes found in function_app"
    assert registered - described == set(), "routes missing from the OpenAPI document"
    assert described - registered == set(), "the document describes routes the app does not register"


def test_document_is_openapi_31_with_valid_schemas_and_error_bodies() -> None:
    document = openapi_document("http://127.0.0.1:7071")
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": "http://127.0.0.1:7071"}]
    assert set(document["components"]["securitySchemes"]) == {"functionKey", "functionKeyQuery", "bearer"}
    for name, schema in document["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema), name
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, item in document["paths"].items():
        for method, op in item.items():
            assert op["responses"]["default"]["content"]["application/json"]["schema"] == error_ref
            for status, response in op["responses"].items():
                if status != "default" and int(status) >= 400 and (path, status) != ("/api/ready", "503"):
                    assert response["content"]["application/json"]["schema"] == error_ref, (path, method, status)
    json.dumps(document)  # serialisable as it is served


def test_operation_ids_unique_and_run_routes_document_their_statuses() -> None:
    ids = [op.operation_id for op in OPERATIONS]
    assert len(ids) == len(set(ids))
    start = openapi_document()["paths"]["/api/runs"]["post"]
    assert {"200", "202", "400", "409", "413", "415", "429"} <= set(start["responses"])
    assert start["requestBody"]["content"]["application/json"]["example"]["mode"] == "plan"
    assert openapi_document()["paths"]["/api/health"]["get"]["security"] == []
