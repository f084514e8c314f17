from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import DevhostProcess, devhost_env, free_port

TEST_APP = Path(__file__).resolve().parents[2] / "devhost_app"

KEYS = {
    "masterKey": "master-key-for-tests-0123456789",
    "functionKeys": {"default": "host-key-for-tests-0123456789"},
    "systemKeys": {"mcp_extension": "mcp-key-for-tests-0123456789", "durabletask_extension": "dt-key-for-tests-012345"},
    "functions": {"echo": {"default": "echo-only-key-0123456789"}},
}


@pytest.fixture(scope="module")
def devhost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    """``python -m devhost serve`` for the test app, in its own process with its own state file."""
    db = tmp_path_factory.mktemp("devhost") / "state.sqlite"
    proc = DevhostProcess(TEST_APP, db, free_port(), devhost_env({"AzureWebJobsStorage": ""})).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def keyed_devhost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    """The same, enforcing function keys (``DEVHOST_KEYS=1``) from a keys file with known values."""
    state = tmp_path_factory.mktemp("devhost-keys")
    keys_file = state / "keys.json"
    keys_file.write_text(json.dumps(KEYS))
    env = devhost_env({"AzureWebJobsStorage": "", "DEVHOST_KEYS": "1", "DEVHOST_KEYS_FILE": str(keys_file)})
    proc = DevhostProcess(TEST_APP, state / "state.sqlite", free_port(), env).start()
    yield proc
    proc.stop()
