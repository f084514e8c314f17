"""Catalogs of two "instances" kept in step through one registry file: registration, idempotency, start-up, the
refresh interval, lookups of missing tools, retries, clashes (OpenAPI files only: no servers needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.catalog.catalog import Catalog
from shared.errors import InvalidRequest
from shared.runtime import RuntimeSettings, build_runtime
from shared.sources.config import SourceSettings
from shared.sources.loader import SourceReport
from shared.sources.registry import FileRegistryStore, SourceRegistry
from shared.sources.registry_sync import RegistrySync
from tests.fakes.openapi_server import pets_document


class CountingStore(FileRegistryStore):
    """A registry file that counts how often it is asked for its version and its document."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.versions = 0
        self.reads = 0

    def version(self) -> str | None:
        self.versions += 1
        return super().version()

    def read(self) -> tuple[bytes | None, str | None]:
        self.reads += 1
        return super().read()


class Instance:
    """One app instance: its own catalog and sync, over the shared registry file."""

    def __init__(self, path: Path, *, interval_s: float = 30.0) -> None:
        self.now = 100.0
        self.store = CountingStore(path)
        self.catalog = Catalog()
        self.changes: list[list[SourceReport]] = []
        self.sync = RegistrySync(self.catalog, SourceRegistry(self.store), SourceSettings(), interval_s=interval_s,
                                 on_change=self.changes.append, clock=lambda: self.now, allow_local=True)


def write_pets(folder: Path, name: str = "pets.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(pets_document("https://pets.example")))
    return path


@pytest.fixture
def registry_path(tmp_path: Path) -> Path:
    return tmp_path / "shared" / "source-registry.json"


def pets_entry(path: Path, alias: str = "pets", **extra: Any) -> dict[str, Any]:
    return {"type": "openapi", "path": str(path), "alias": alias, **extra}


def test_a_source_registered_on_one_instance_is_found_by_another(tmp_path: Path, registry_path: Path) -> None:
    pets = write_pets(tmp_path)
    a, b = Instance(registry_path), Instance(registry_path)
    registration = asyncio.run(a.sync.register(pets_entry(pets), allow_local=True))
    assert registration.created and registration.report.tool_count == 12
    assert "pets.getPet" in a.catalog and [r.tool_count for r in a.changes[0]] == [12]

    assert "pets.getPet" not in b.catalog
    assert b.sync.ensure(["pets.getPet", "pets.listPets"]) == []
    assert len(b.catalog) == 12 and b.catalog.get("pets.getPet").spec.source == "openapi"
    assert [(r.alias, r.tool_count, r.origin) for r in b.changes[0]] == [("pets", 12, "fresh")]
    assert b.sync.loaded() == {registration.report.source_id: tuple(registration.report.tools)}


def test_registering_the_same_source_again_is_idempotent(tmp_path: Path, registry_path: Path) -> None:
    pets = write_pets(tmp_path)
    a = Instance(registry_path)
    first = asyncio.run(a.sync.register(pets_entry(pets), allow_local=True))
    version = a.store.version()
    again = asyncio.run(a.sync.register(pets_entry(pets), allow_local=True))
    assert (first.created, again.created) == (True, False)
    assert again.report.source_id == first.report.source_id and again.report.tool_count == 12
    assert len(a.catalog) == 12 and a.store.version() == version
    assert len(SourceRegistry(a.store).read().sources) == 1


def test_a_source_whose_tools_clash_is_refused_and_not_registered(tmp_path: Path, registry_path: Path) -> None:
    pets = write_pets(tmp_path)
    a = Instance(registry_path)
    asyncio.run(a.sync.register(pets_entry(pets), allow_local=True))
    version = a.store.version()
    with pytest.raises(InvalidRequest, match="already registered; give the source an alias") as caught:
        asyncio.run(a.sync.register(pets_entry(pets, timeout_s=5), allow_local=True))
    assert caught.value.field == "source"
    assert a.store.version() == version and len(a.catalog) == 12


@pytest.mark.parametrize(("entry", "problem"), [
    pytest.param({"type": "mcp", "transport": "stdio", "command": "rm", "args": ["-rf", "/"]}, "WEFT_TOOL_SOURCES",
                 id="stdio-command"),
    pytest.param({"type": "openapi", "path": "/etc/passwd"}, "WEFT_TOOL_SOURCES", id="local-path"),
    pytest.param({"type": "openapi"}, "url or path", id="invalid"),
])
def test_refused_sources_leave_the_registry_untouched(
    registry_path: Path, entry: dict[str, Any], problem: str
) -> None:
    a = Instance(registry_path)
    with pytest.raises(InvalidRequest, match=problem):
        asyncio.run(a.sync.register(entry))
    assert not registry_path.exists()


def test_a_source_that_cannot_be_discovered_is_not_registered(tmp_path: Path, registry_path: Path) -> None:
    a = Instance(registry_path)
    with pytest.raises(InvalidRequest, match="cannot read"):
        asyncio.run(a.sync.register(pets_entry(tmp_path / "missing.yaml"), allow_local=True))
    assert not registry_path.exists() and len(a.catalog) == 0


def test_the_hot_path_does_not_touch_storage(tmp_path: Path, registry_path: Path) -> None:
    pets = write_pets(tmp_path)
    asyncio.run(Instance(registry_path).sync.register(pets_entry(pets), allow_local=True))
    b = Instance(registry_path)
    b.sync.refresh()
    b.store.versions = b.store.reads = 0
    for _ in range(1000):
        assert b.sync.ensure(["pets.getPet"]) == []
        assert b.sync.refresh_if_due() is None
    assert asyncio.run(b.sync.ensure_async(["pets.listPets"])) == []
    assert (b.store.versions, b.store.reads) == (0, 0)


def test_a_due_refresh_checks_the_version_and_reads_only_when_it_changed(tmp_path: Path, registry_path: Path) -> None:
    write_pets(tmp_path)
    a, b = Instance(registry_path), Instance(registry_path, interval_s=30)
    b.sync.refresh()  # start-up: nothing registered yet
    assert (b.store.versions, b.store.reads) == (1, 0)

    b.now += 31
    thread = b.sync.refresh_if_due()
    assert thread is not None
    thread.join()
    assert (b.store.versions, b.store.reads) == (2, 0), "unchanged: one version check, no read"

    asyncio.run(a.sync.register(pets_entry(tmp_path / "pets.yaml"), allow_local=True))
    b.now += 10
    assert b.sync.refresh_if_due() is None, "not due yet"
    assert "pets.getPet" not in b.catalog
    b.now += 21
    thread = b.sync.refresh_if_due()
    assert thread is not None
    thread.join()
    assert (b.store.versions, b.store.reads) == (3, 1)
    assert "pets.getPet" in b.catalog


def test_a_missing_tool_checks_at_once_and_an_unknown_one_costs_one_version_check(
    tmp_path: Path, registry_path: Path
) -> None:
    pets = write_pets(tmp_path)
    b = Instance(registry_path)
    b.sync.refresh()
    asyncio.run(Instance(registry_path).sync.register(pets_entry(pets), allow_local=True))
    assert b.sync.ensure(["pets.getPet"]) == [], "within the interval, but a tool is missing"
    b.store.versions = b.store.reads = 0
    assert b.sync.ensure(["no_such_tool", "pets.getPet", "no_such_tool"]) == ["no_such_tool"]
    assert asyncio.run(b.sync.ensure_async(["other_unknown"])) == ["other_unknown"]
    assert (b.store.versions, b.store.reads) == (2, 0)


def test_a_source_that_fails_to_load_is_tried_again_at_the_next_check(tmp_path: Path, registry_path: Path) -> None:
    pets = write_pets(tmp_path)
    asyncio.run(Instance(registry_path).sync.register(pets_entry(pets), allow_local=True))
    pets.rename(tmp_path / "away.yaml")  # the source is down while b starts
    b = Instance(registry_path)
    reports = b.sync.refresh()
    assert [(r.alias, r.tool_count) for r in reports] == [("pets", 0)] and "cannot read" in reports[0].error
    (tmp_path / "away.yaml").rename(pets)
    b.store.reads = 0
    reports = b.sync.refresh()
    assert [(r.alias, r.tool_count) for r in reports] == [("pets", 12)]
    assert b.store.reads == 1, "read again although the registry did not change"
    assert b.sync.refresh() == [] and b.store.reads == 1, "nothing pending any more"


def test_unknown_tool_names_do_not_retry_a_failing_source(tmp_path: Path, registry_path: Path) -> None:
    """Only the periodic refresh retries a source that failed to load: a typo in a tool name costs a version check,
    not a new discovery (which could wait out a dead source's timeout)."""
    pets = write_pets(tmp_path)
    asyncio.run(Instance(registry_path).sync.register(pets_entry(pets), allow_local=True))
    pets.rename(tmp_path / "away.yaml")
    b = Instance(registry_path)
    assert b.sync.refresh()[0].tool_count == 0
    (tmp_path / "away.yaml").rename(pets)  # back up: a discovery now would succeed
    b.store.reads = b.store.versions = 0
    assert b.sync.ensure(["pets.getPett"]) == ["pets.getPett"]
    assert (b.store.versions, b.store.reads, len(b.catalog)) == (1, 0, 0)
    assert [r.tool_count for r in b.sync.refresh()] == [12], "the refresh still retries it"


def test_a_registered_source_clashing_with_this_catalog_is_reported_and_skipped(
    tmp_path: Path, registry_path: Path
) -> None:
    pets = write_pets(tmp_path)
    asyncio.run(Instance(registry_path).sync.register(pets_entry(pets), allow_local=True))
    b = Instance(registry_path)
    b.catalog.register(lambda: None, name="pets.getPet", description="Another tool of this instance.")
    reports = b.sync.refresh()
    assert [(r.alias, r.tool_count) for r in reports] == [("pets", 0)]
    assert "'pets.getPet' is already registered" in reports[0].error
    assert b.catalog.get("pets.getPet").spec.description == "Another tool of this instance."
    assert b.sync.refresh() == [], "a clash is not retried until the registry changes"


def test_sources_loaded_from_the_sources_file_are_not_loaded_twice(tmp_path: Path, registry_path: Path) -> None:
    pets = write_pets(tmp_path)
    first = asyncio.run(Instance(registry_path).sync.register(pets_entry(pets), allow_local=True)).report
    b = Instance(registry_path)
    b.sync.note_loaded([first])
    b.store.reads = 0
    assert b.sync.refresh() == [] and b.store.reads == 1 and len(b.catalog) == 0


def test_the_runtime_refuses_registry_entries_the_api_would_refuse(tmp_path: Path) -> None:
    """A path source written straight into the registry (by whoever can write its storage) is not loaded: reading
    local files, like running a stdio command, is for WEFT_TOOL_SOURCES only."""
    pets = write_pets(tmp_path)
    state = tmp_path / "state"
    asyncio.run(Instance(state / "source-registry.json").sync.register(pets_entry(pets), allow_local=True))
    settings = RuntimeSettings(demo_tools=False, state_dir=str(state),
                               sources=SourceSettings(discovery_cache_dir=str(tmp_path / "discovery")))
    runtime = build_runtime(settings)
    assert "pets.getPet" not in runtime.catalog and len(runtime.catalog) == 0
    (report,) = runtime.source_reports
    assert report.alias == "pets" and report.tool_count == 0 and "WEFT_TOOL_SOURCES" in (report.error or "")
