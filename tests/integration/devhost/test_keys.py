"""Function keys, enforced like the host when the devhost runs with ``--keys`` / ``DEVHOST_KEYS=1``."""

from __future__ import annotations

import json
import time

import pytest

from tests.integration.devhost.conftest import KEYS, TEST_APP
from tests.support import DevhostProcess, devhost_env, free_port, http

MASTER = KEYS["masterKey"]
HOST_KEY = KEYS["functionKeys"]["default"]
ECHO_KEY = KEYS["functions"]["echo"]["default"]
DURABLE_KEY = KEYS["systemKeys"]["durabletask_extension"]
MCP_KEY = KEYS["systemKeys"]["mcp_extension"]


def assert_401(status: int, body: object) -> None:
    assert status == 401
    assert isinstance(body, dict) and body["code"] == "unauthenticated" and body["field"] == "code"
    assert all(key not in json.dumps(body) for key in (MASTER, HOST_KEY, ECHO_KEY))


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        pytest.param("/api/echo/1/x", {}, id="no-key"),
        pytest.param("/api/echo/1/x?code=wrong", {}, id="wrong-code"),
        pytest.param("/api/echo/1/x", {"x-functions-key": "wrong"}, id="wrong-header"),
        pytest.param("/api/trace", {"x-functions-key": ECHO_KEY}, id="another-functions-key"),
        pytest.param("/api/echo/1/x", {"x-functions-key": MCP_KEY}, id="system-key-is-not-a-function-key"),
    ],
)
def test_function_level_routes_refuse_without_the_right_key(keyed_devhost: DevhostProcess, path: str,
                                                           headers: dict[str, str]) -> None:
    status, _, body = http("GET", keyed_devhost.base_url + path, headers=headers)
    assert_401(status, body)


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        pytest.param("/api/echo/1/x", {"x-functions-key": HOST_KEY}, id="host-key-header"),
        pytest.param(f"/api/echo/1/x?code={HOST_KEY}", {}, id="host-key-code"),
        pytest.param("/api/echo/1/x", {"x-functions-key": ECHO_KEY}, id="the-functions-own-key"),
        pytest.param("/api/echo/1/x", {"x-functions-key": MASTER}, id="master-key"),
    ],
)
def test_function_level_routes_accept_the_right_key(keyed_devhost: DevhostProcess, path: str,
                                                    headers: dict[str, str]) -> None:
    status, _, body = http("GET", keyed_devhost.base_url + path, headers=headers)
    assert status == 200 and body["route"] == {"id": "1", "rest": "x"}


def test_anonymous_routes_need_no_key(keyed_devhost: DevhostProcess) -> None:
    assert http("GET", keyed_devhost.base_url + "/api/teapot")[0] == 418


def test_admin_needs_the_master_key(keyed_devhost: DevhostProcess) -> None:
    url = keyed_devhost.base_url + "/admin/functions/tick"
    assert_401(*http("POST", url, {"input": None}, headers={"x-functions-key": HOST_KEY})[::2])
    assert_401(*http("POST", url, {"input": None})[::2])
    assert http("POST", url, {"input": None}, headers={"x-functions-key": MASTER})[0] == 202


def test_durable_webhooks_need_the_system_or_master_key(keyed_devhost: DevhostProcess) -> None:
    hook = keyed_devhost.base_url + "/runtime/webhooks/durabletask/instances"
    assert_401(*http("GET", hook)[::2])
    assert_401(*http("GET", hook, headers={"x-functions-key": HOST_KEY})[::2])
    assert http("GET", hook + f"?code={DURABLE_KEY}")[0] == 200
    assert http("GET", hook, headers={"x-functions-key": MASTER})[0] == 200


def test_check_status_urls_carry_the_durable_system_key(keyed_devhost: DevhostProcess) -> None:
    """The app's Durable client (rpc prefix, loopback) works with keys on; the URLs it hands out carry the key."""
    status, _, body = http("POST", keyed_devhost.base_url + "/api/start/sequence",
                           headers={"x-functions-key": HOST_KEY})
    assert status == 202
    assert f"code={DURABLE_KEY}" in body["statusQueryGetUri"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        code, _, final = http("GET", body["statusQueryGetUri"])
        if code == 200:
            break
        time.sleep(0.05)
    assert final["output"] == [4, 16, 9]


def test_keys_file_is_created_with_random_keys(tmp_path) -> None:
    """Enforcement with no keys file: one is created (mode 0600) and its master key opens the app."""
    env = devhost_env({"AzureWebJobsStorage": "", "DEVHOST_KEYS": "1"})
    proc = DevhostProcess(TEST_APP, tmp_path / "state.sqlite", free_port(), env).start()
    try:
        keys_file = tmp_path / "keys.json"
        assert keys_file.stat().st_mode & 0o777 == 0o600
        keys = json.loads(keys_file.read_text())
        assert len(keys["masterKey"]) >= 40 and set(keys["systemKeys"]) == {"mcp_extension", "durabletask_extension"}
        assert keys["masterKey"] not in proc.log() and "function keys off" not in proc.log()
        assert http("GET", proc.base_url + "/api/echo/1/x")[0] == 401
        assert http("GET", proc.base_url + "/api/echo/1/x", headers={"x-functions-key": keys["masterKey"]})[0] == 200
    finally:
        proc.stop()


def test_keys_are_off_by_default_and_the_open_durable_api_is_said_at_start(devhost: DevhostProcess) -> None:
    assert http("GET", devhost.base_url + "/api/echo/1/x")[0] == 200
    assert http("GET", devhost.base_url + "/runtime/webhooks/durabletask/instances")[0] == 200
    assert "function keys off" in devhost.log() and "/runtime/webhooks/durabletask" in devhost.log()


def test_serving_beyond_loopback_without_keys_warns(tmp_path) -> None:
    import subprocess
    import sys

    from tests.support import ROOT, wait_port

    port = free_port()
    log = tmp_path / "log.txt"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--app-dir", str(TEST_APP), "--db", str(tmp_path / "s.sqlite"),
             "serve", "--host", "0.0.0.0", "--port", str(port), "--no-queues", "--no-timers"],
            cwd=ROOT, env=devhost_env({"AzureWebJobsStorage": ""}), stdout=out, stderr=subprocess.STDOUT,
        )
        try:
            wait_port(port, 60, proc)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert "WITHOUT function keys" in log.read_text()
