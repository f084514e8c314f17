from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import DevhostProcess, devhost_env, free_port

TEST_APP = Path(__file__).resolve().parents[2] / "devhost_app"


@pytest.fixture(scope="module")
def devhost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    """``python -m devhost serve`` for the test app, in its own process with its own state file."""
    db = tmp_path_factory.mktemp("devhost") / "state.sqlite"
    proc = DevhostProcess(TEST_APP, db, free_port(), devhost_env({"AzureWebJobsStorage": ""})).start()
    yield proc
    proc.stop()
