"""``python -m devhost``: headless runs and clear errors."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from tests.integration.devhost.conftest import TEST_APP
from tests.support import ROOT, devhost_env


def devhost(*args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devhost", *args], cwd=ROOT, env=devhost_env(), check=False,
                          capture_output=True, text=True, input=input_text, timeout=120)


def test_run_prints_status_and_output(tmp_path) -> None:
    spec = tmp_path / "in.json"
    spec.write_text(json.dumps({"n": 5}))
    result = devhost("--app-dir", str(TEST_APP), "--db", ":memory:", "run", "fan_out", "--input", str(spec))
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["runtimeStatus"] == "Completed" and status["output"] == 30


def test_run_exits_non_zero_on_failure() -> None:
    result = devhost("--app-dir", str(TEST_APP), "--db", ":memory:", "run", "crashes", "--input", "-",
                     input_text='"it broke"')
    assert result.returncode == 1
    assert json.loads(result.stdout)["output"] == "it broke"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--app-dir", "/nonexistent", "run", "x"], "no function_app.py", id="missing-app"),
        pytest.param(["--app-dir", str(TEST_APP), "--db", ":memory:", "run", "nope"], "no orchestrator named 'nope'",
                     id="unknown-orchestrator"),
    ],
)
def test_clear_errors(args: list[str], message: str) -> None:
    result = devhost(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_bad_settings_file_is_named(tmp_path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "function_app.py").write_text("import azure.functions as func\napp = func.FunctionApp()\n")
    (app / "local.settings.json").write_text("{not json")
    result = devhost("--app-dir", str(app), "--db", ":memory:", "run", "x")
    assert result.returncode == 2
    assert "local.settings.json is not valid JSON" in result.stderr


def test_port_in_use_is_reported(tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = devhost("--app-dir", str(TEST_APP), "--db", str(tmp_path / "s.sqlite"), "serve", "--port", str(port))
    assert result.returncode == 2
    assert f"port {port}" in result.stderr and "in use" in result.stderr
