"""Secrets reach a tool source only where an operator bound them: registering a source that names an unbound secret
(or a bound one toward another host) is refused before anything is read, a registry entry tampered the same way is
never loaded, and a bound secret is looked up only for its host. Registered sources can be removed, on every
instance."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.fakes.openapi_server import PetsApi
from tests.integration.runs.conftest import run_plan, weft_env
from tests.support import ROOT, DevhostProcess, free_port, http, wait_until


@pytest.fixture
def pets() -> Iterator[PetsApi]:
    server = PetsApi()
    server.start()
    yield server
    server.stop()


def start(state: Path, bindings: dict[str, list[str]], *, db: str = "devhost.sqlite") -> DevhostProcess:
    env = weft_env(None, state, WEFT_ALLOW_PRIVATE_NETWORK="true", WEFT_DEMO_TOOLS="false",
                   WEFT_SOURCE_REGISTRY_REFRESH_S="1", WEFT_SECRET_BINDINGS=json.dumps(bindings))
    return DevhostProcess(ROOT, state / db, free_port(), env).start()


def with_secret(pets: PetsApi, secret: str) -> dict[str, object]:
    return {**pets.source_config(alias="shop"), "auth": {"secret": secret, "header": "Authorization"}}


def test_only_a_secret_bound_to_the_sources_host_can_be_registered(pets: PetsApi, tmp_path: Path) -> None:
    host = urlsplit(pets.url).hostname or ""
    weft = start(tmp_path, {"shop-token": [host], "other-token": ["api.example.com"]})
    try:
        status, _, refused = http("POST", weft.base_url + "/api/tools/sources", with_secret(pets, "vault-admin"))
        assert status == 403 and refused["field"] == "auth.secret" and "not bound to any host" in refused["message"]
        status, _, refused = http("POST", weft.base_url + "/api/tools/sources", with_secret(pets, "other-token"))
        assert status == 403 and f"not bound to host {host!r}" in refused["message"]
        assert http("GET", weft.base_url + "/api/tools")[2]["count"] == 0
        status, _, report = http("POST", weft.base_url + "/api/tools/sources", with_secret(pets, "shop-token"))
        assert status == 201, report
        # the bound secret is looked up for its host only: here no vault is configured, so the call says so
        view = run_plan(weft, [{"id": "who", "tool": "shop.whoami", "args": {}}])
        (step,) = view["result"]["steps"]
        assert step["status"] == "failed" and step["error"]["code"] == "not_configured"
        assert "shop-token" in step["error"]["message"] and not any(
            "authorization" in {k.lower() for k in r.headers} for r in pets.requests if r.path.endswith("whoami"))
    finally:
        weft.stop()


def test_a_tampered_registry_entry_with_an_unbound_secret_is_never_loaded(pets: PetsApi, tmp_path: Path) -> None:
    registry = tmp_path / "source-registry.json"
    config = with_secret(pets, "vault-admin")
    registry.write_text(json.dumps({"format": 1, "sources": [
        {"id": "x" * 64, "config": config, "registered_at": 0}]}))
    weft = start(tmp_path, {"shop-token": [urlsplit(pets.url).hostname or ""]})
    try:
        assert http("GET", weft.base_url + "/api/tools")[2]["count"] == 0
        status, _, _ = http("GET", weft.base_url + "/api/tools/shop.listPets")
        assert status == 404
    finally:
        weft.stop()


def test_a_registered_source_is_removed_on_every_instance(pets: PetsApi, tmp_path: Path) -> None:
    a = start(tmp_path, {}, db="a.sqlite")
    b = start(tmp_path, {}, db="b.sqlite")
    try:
        status, _, report = http("POST", a.base_url + "/api/tools/sources", pets.source_config(alias="shop"))
        assert status == 201, report
        assert run_plan(b, [{"id": "l", "tool": "shop.listPets", "args": {}}])["status"] == "completed"
        sid = report["source_id"]
        assert http("DELETE", f"{a.base_url}/api/tools/sources/{'0' * 64}")[0] == 404
        assert http("DELETE", f"{a.base_url}/api/tools/sources/not-an-id")[0] == 404
        status, _, removed = http("DELETE", f"{a.base_url}/api/tools/sources/{sid}")
        assert status == 200 and "shop.listPets" in removed["removed_tools"]
        assert http("GET", a.base_url + "/api/tools/shop.listPets")[0] == 404
        assert json.loads((tmp_path / "source-registry.json").read_text())["sources"] == []
        wait_until(lambda: http("GET", b.base_url + "/api/tools")[2]["count"] == 0, 30,
                   "instance b dropping the removed source's tools")
        assert http("DELETE", f"{a.base_url}/api/tools/sources/{sid}")[0] == 404
    finally:
        a.stop()
        b.stop()
