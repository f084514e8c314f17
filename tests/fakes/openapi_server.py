"""A loopback pets API with its OpenAPI 3 document, for tests of OpenAPI sources.

``GET /openapi.json`` (and ``/openapi.yaml``) serves the document, whose server is ``<url>/api``. Operations:

- ``listPets``   ``GET /api/pets?limit=&tag=`` (query params; ``tag`` is an array, filtered by its last value)
- ``getPet``     ``GET /api/pets/{petId}`` (path param; 404 for unknown ids)
- ``createPet``  ``POST /api/pets`` (JSON body ``{name, tag}``, flattened into the arguments; 201; replays by
  ``Idempotency-Key``)
- ``importPets`` ``POST /api/pets/import`` (JSON array body, so it travels under ``body``)
- ``deletePet``  ``DELETE /api/pets/{petId}``
- ``getFile``    ``GET /api/files/{name}`` (echoes the raw request path, to check URL-encoding)
- ``broken`` (500), ``busy`` (429 with ``Retry-After``), ``whoami`` (needs ``Authorization: Bearer <token>``; 401),
  ``readme`` (``text/plain``), ``big`` (a response of ``size`` bytes), ``moved`` (302)

Use :func:`start_openapi_server` (or the class as a context manager); ``stop()`` stops it.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import yaml

from tests.fakes import LoopbackServer, RecordedRequest, Response

__all__ = ["BEARER_TOKEN", "PetsApi", "pets_document", "pets_sources_file", "start_openapi_server"]

BEARER_TOKEN = "s3cret-token"
"""The token ``whoami`` accepts."""

_PET = {
    "type": "object",
    "required": ["id", "name"],
    "properties": {
        "id": {"type": "integer", "readOnly": True},
        "name": {"type": "string", "description": "The pet's name."},
        "tag": {"type": "string", "nullable": True},
        "owner": {"$ref": "#/components/schemas/Owner"},
    },
}
_OWNER = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "pets": {"type": "array", "items": {"$ref": "#/components/schemas/Pet"}},
    },
}
_PET_ID = {"name": "petId", "in": "path", "required": True, "schema": {"type": "integer"}, "description": "Pet id."}


def _op(op_id: str, summary: str, *, tags: tuple[str, ...] = ("pets",), **extra: Any) -> dict[str, Any]:
    return {"operationId": op_id, "summary": summary, "tags": list(tags), "responses": {"200": {"description": "ok"}},
            **extra}


def pets_document(base_url: str) -> dict[str, Any]:
    """The OpenAPI 3.0 document, with ``servers[0].url = <base_url>/api``."""
    json_body = {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Pets", "version": "1.0.0"},
        "servers": [{"url": f"{base_url}/api"}],
        "paths": {
            "/pets": {
                "get": _op("listPets", "List pets.", parameters=[
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                    {"name": "tag", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}},
                ]),
                "post": _op("createPet", "Create a pet.", requestBody=json_body),
            },
            "/pets/import": {"post": _op("importPets", "Import several pets.", requestBody={
                "required": True,
                "content": {"application/json": {"schema": {
                    "type": "array", "items": {"$ref": "#/components/schemas/Pet"},
                }}},
            })},
            "/pets/{petId}": {
                "parameters": [{"$ref": "#/components/parameters/PetId"}],
                "get": _op("getPet", "Get a pet.", description="Returns one pet by id."),
                "delete": _op("deletePet", "Delete a pet."),
            },
            "/files/{name}": {"get": _op("getFile", "Echo the request path.", tags=("files",), parameters=[
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
            ])},
            "/broken": {"get": _op("broken", "Always 500.", tags=("errors",))},
            "/busy": {"get": _op("busy", "Always 429.", tags=("errors",))},
            "/whoami": {"get": _op("whoami", "Needs a bearer token.", tags=("auth",), parameters=[
                {"name": "Authorization", "in": "header", "schema": {"type": "string"}},
                {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
            ])},
            "/readme": {"get": _op("readme", "Plain text.", tags=())},
            "/big": {"get": _op("big", "A large response.", tags=(), parameters=[
                {"name": "size", "in": "query", "required": True, "schema": {"type": "integer"}},
            ])},
            "/moved": {"get": _op("moved", "Redirects.", tags=())},
        },
        "components": {
            "schemas": {"Pet": _PET, "Owner": _OWNER},
            "parameters": {"PetId": _PET_ID},
        },
    }


class PetsApi(LoopbackServer):
    """The pets API on 127.0.0.1:<ephemeral>; ``requests`` records every request."""

    def __init__(self) -> None:
        super().__init__()
        self.pets: dict[int, dict[str, Any]] = {
            1: {"id": 1, "name": "Rex", "tag": "dog"},
            2: {"id": 2, "name": "Tom", "tag": "cat"},
        }
        self.by_key: dict[str, dict[str, Any]] = {}
        self._state = threading.Lock()

    @property
    def document_url(self) -> str:
        """Where the JSON document is served."""
        return f"{self.url}/openapi.json"

    def source_config(self, alias: str | None = "pets", **extra: Any) -> dict[str, Any]:
        """A ``WEFT_TOOL_SOURCES`` entry for this API."""
        return {"type": "openapi", "url": self.document_url, "alias": alias, **extra}

    def handle(self, request: RecordedRequest) -> Response:
        """Route one request."""
        path, method = request.path, request.method
        if path == "/openapi.json":
            return Response(200, pets_document(self.url))
        if path == "/openapi.yaml":
            text = yaml.safe_dump(pets_document(self.url)).encode()
            return Response(200, text, {"Content-Type": "application/yaml"})
        with self._state:
            return self._api(method, path.removeprefix("/api"), request)

    def _api(self, method: str, path: str, request: RecordedRequest) -> Response:
        if path == "/pets" and method == "GET":
            pets = sorted(self.pets.values(), key=lambda pet: pet["id"])
            if "tag" in request.query:  # the recorder keeps the last of repeated keys
                pets = [pet for pet in pets if pet.get("tag") == request.query["tag"]]
            return Response(200, pets[: int(request.query.get("limit", 100))])
        if path == "/pets" and method == "POST":
            key = request.headers.get("idempotency-key", "")
            if key in self.by_key:
                return Response(201, self.by_key[key])
            pet = {"id": max(self.pets) + 1, **request.json()}
            self.pets[pet["id"]] = self.by_key[key] = pet
            return Response(201, pet)
        if path == "/pets/import" and method == "POST":
            added = [{"id": max(self.pets) + 1 + index, **item} for index, item in enumerate(request.json())]
            self.pets.update({pet["id"]: pet for pet in added})
            return Response(200, {"imported": len(added)})
        if match := re.fullmatch(r"/pets/(\d+)", path):
            pet_id = int(match.group(1))
            if pet_id not in self.pets:
                return Response(404, {"error": f"no pet {pet_id}"})
            if method == "DELETE":
                del self.pets[pet_id]
                return Response(204, b"")
            return Response(200, self.pets[pet_id])
        if path.startswith("/files/"):
            return Response(200, {"raw_path": request.path})
        if path == "/broken":
            return Response(500, {"error": "database on fire"})
        if path == "/busy":
            return Response(429, {"error": "slow down"}, {"Retry-After": "3"})
        if path == "/whoami":
            if request.headers.get("authorization") != f"Bearer {BEARER_TOKEN}":
                return Response(401, {"error": "bad token", "got": request.headers.get("authorization")})
            return Response(200, {"user": "weft", "trace": request.headers.get("x-trace")})
        if path == "/readme":
            return Response(200, b"hello, pets", {"Content-Type": "text/plain"})
        if path == "/big":
            return Response(200, json.dumps("x" * int(request.query["size"])).encode())
        if path == "/moved":
            return Response(302, b"", {"Location": f"{self.url}/api/pets"})
        return Response(404, {"error": "not found"})


def start_openapi_server() -> PetsApi:
    """Start the pets API; call ``stop()`` when done (or use it as a context manager)."""
    server = PetsApi()
    server.start()
    return server


def pets_sources_file(folder: Path) -> tuple[Path, str]:
    """A WEFT_TOOL_SOURCES file with one OpenAPI source (the pets document, read from disk), and that source's id."""
    from shared.sources.config import parse_source, source_id

    document = folder / "pets.yaml"
    document.write_text(yaml.safe_dump(pets_document("https://pets.example")))
    entry = {"type": "openapi", "path": str(document), "alias": "pets"}
    path = folder / "sources.yaml"
    path.write_text(yaml.safe_dump({"sources": [entry]}))
    return path, source_id(parse_source(entry))
