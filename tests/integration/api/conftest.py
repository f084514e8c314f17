"""One devhost on Weft's function_app.py for the API tests (local state: SQLite run index, payloads in a folder)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.runs.conftest import weft_env
from tests.support import ROOT, DevhostProcess, free_port


@pytest.fixture(scope="package")
def api_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    state = tmp_path_factory.mktemp("api")
    env = weft_env(None, state, WEFT_RUN_WAIT_MAX_S="5")
    proc = DevhostProcess(ROOT, state / "devhost.sqlite", free_port(), env).start()
    yield proc
    proc.stop()
