"""Tools from real sources, called through runs on the devhost: an MCP server over stdio and over streamable HTTP,
and an OpenAPI document served on loopback. Also the catalog endpoints: search, reload, register a source."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.fakes.mcp_server import start_http_server, stdio_source_config
from tests.fakes.openapi_server import PetsApi
from tests.integration.runs.conftest import run_plan, steps_by_id, weft_env
from tests.support import ROOT, DevhostProcess, free_port, http


@pytest.fixture(scope="module")
def sourced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevhostProcess, PetsApi]]:
    state = tmp_path_factory.mktemp("sources")
    pets = PetsApi()
    pets.start()
    mcp_http = start_http_server()
    sources = [stdio_source_config(alias="notes"), mcp_http.source_config(alias="remote"),
               pets.source_config(alias="pets")]
    (state / "sources.json").write_text(json.dumps(sources))
    env = weft_env(None, state, WEFT_TOOL_SOURCES=str(state / "sources.json"), WEFT_ALLOW_PRIVATE_NETWORK="true",
                   WEFT_DISCOVERY_CACHE_DIR=str(state / "discovery"), WEFT_SEARCH_CACHE_DIR=str(state / "emb"))
    host = DevhostProcess(ROOT, state / "devhost.sqlite", free_port(), env).start()
    yield host, pets
    host.stop()
    mcp_http.stop()
    pets.stop()


def test_every_source_is_loaded(sourced: tuple[DevhostProcess, PetsApi]) -> None:
    host, _ = sourced
    listing = http("GET", host.base_url + "/api/tools")[2]
    names = {t["name"] for t in listing["tools"]}
    assert {"notes.add", "remote.add", "pets.listPets", "pets.createPet"} <= names, sorted(names)
    assert all(s["error"] is None for s in listing["sources"]), listing["sources"]
    assert {s["type"] for s in listing["sources"]} == {"mcp", "openapi"}


def test_mcp_tools_over_stdio_and_http_called_through_a_run(sourced: tuple[DevhostProcess, PetsApi]) -> None:
    host, _ = sourced
    view = run_plan(host, [
        {"id": "local", "tool": "notes.add", "args": {"a": 2, "b": 3}},
        {"id": "remote", "tool": "remote.add", "args": {"a": {"$ref": "local.result"}, "b": 10}},
        {"id": "note", "tool": "remote.get_note", "args": {"note_id": "n1"}},
    ])
    assert view["status"] == "completed", view["errors"]
    steps = steps_by_id(view)
    assert steps["local"]["result"] == {"result": 5}
    assert steps["remote"]["result"] == {"result": 15}
    assert steps["note"]["result"]["title"] == "first"


def test_openapi_operation_called_through_a_run(sourced: tuple[DevhostProcess, PetsApi]) -> None:
    host, pets = sourced
    view = run_plan(host, [
        {"id": "new", "tool": "pets.createPet", "args": {"name": "Nemo", "tag": "fish"}},
        {"id": "list", "tool": "pets.listPets", "args": {"limit": 10}, "depends_on": ["new"]},
    ])
    assert view["status"] == "completed", view["errors"]
    listed = steps_by_id(view)["list"]["result"]
    assert "Nemo" in json.dumps(listed)
    created = [r for r in pets.requests if r.method == "POST" and r.path == "/api/pets"]
    assert created and created[-1].headers.get("idempotency-key") == f"{view['id']}:new"


def test_http_request_lines_stay_out_of_the_devhost_log(sourced: tuple[DevhostProcess, PetsApi]) -> None:
    host, pets = sourced
    canary = "query-canary-52b1"
    view = run_plan(host, [{"id": "list", "tool": "pets.listPets", "args": {"tag": [canary]}}])
    assert view["status"] == "completed", view["errors"]
    assert any(r.query.get("tag") == canary for r in pets.requests), "the request carried it in its query string"
    log = host.log()
    assert "weft runtime ready" in log, "the devhost logs at INFO"
    assert canary not in log and f"{pets.url}/api/pets" not in log


@pytest.mark.parametrize(("body", "field"), [
    pytest.param({"query": ""}, "query", id="empty-query"),
    pytest.param({"query": "add", "k": 0}, "k", id="k-too-small"),
    pytest.param({"query": "add", "k": 10_000}, "k", id="k-too-large"),
    pytest.param({"query": "add", "filters": {"colour": "red"}}, "filters.colour", id="unknown-filter"),
    pytest.param({"q": "add"}, "q", id="unknown-field"),
])
def test_search_rejects_bad_input(sourced: tuple[DevhostProcess, PetsApi], body: dict, field: str) -> None:
    host, _ = sourced
    status, _, reply = http("POST", host.base_url + "/api/tools/search", body)
    assert status == 400 and reply["field"] == field


def test_search_ranks_and_filters(sourced: tuple[DevhostProcess, PetsApi]) -> None:
    host, _ = sourced
    reply = http("POST", host.base_url + "/api/tools/search",
                 {"query": "list the pets in the shop", "k": 3, "filters": {"source": "openapi"}},
                 timeout=300)[2]  # the first search loads the embedding model and embeds the catalog
    names = [r["name"] for r in reply["results"]]
    assert names[0] == "pets.listPets" and all(n.startswith("pets.") for n in names)
    scores = [r["score"] for r in reply["results"]]
    assert scores == sorted(scores, reverse=True)


def test_register_source_and_refuse_private_address_by_default(tmp_path) -> None:
    pets = PetsApi()
    pets.start()
    host = DevhostProcess(ROOT, tmp_path / "d.sqlite", free_port(), weft_env(None, tmp_path)).start()
    try:
        status, _, reply = http("POST", host.base_url + "/api/tools/sources", pets.source_config(alias="shop"))
        assert status == 400 and "127.0.0.1" in reply["message"], reply
        stdio = http("POST", host.base_url + "/api/tools/sources", stdio_source_config(alias="x"))
        assert stdio[0] == 400 and stdio[2]["field"] == "source"
        assert http("POST", host.base_url + "/api/tools/reload")[2]["count"] >= 15
    finally:
        host.stop()
        pets.stop()
