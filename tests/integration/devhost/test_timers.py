"""Timer triggers: a six-field NCRONTAB schedule (seconds first) fires on time; run_on_startup fires at once."""

from __future__ import annotations

import time

from tests.integration.devhost.conftest import TEST_APP
from tests.support import DevhostProcess, devhost_env, free_port


def test_timer_trigger_fires_every_second(tmp_path) -> None:
    ticks = tmp_path / "ticks.txt"
    env = devhost_env({"AzureWebJobsStorage": "", "DEVHOST_TEST_TICK_FILE": str(ticks)})
    host = DevhostProcess(TEST_APP, tmp_path / "s.sqlite", free_port(), env).start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not ticks.exists() or ticks.read_text().count("\n") < 3):
            time.sleep(0.1)
    finally:
        host.stop()
    lines = ticks.read_text().splitlines()
    assert len(lines) >= 3, "run_on_startup plus at least two scheduled ticks"
    assert lines[0] == "False"


def test_ncrontab_has_seconds_first() -> None:
    import datetime as dt

    from devhost.timers import next_fire

    start = dt.datetime(2026, 1, 1, 0, 0, 1, tzinfo=dt.UTC)
    assert next_fire("*/5 * * * * *", start) == dt.datetime(2026, 1, 1, 0, 0, 5, tzinfo=dt.UTC)
    assert next_fire("0 30 9 * * 1-5", start) == dt.datetime(2026, 1, 1, 9, 30, 0, tzinfo=dt.UTC)


def test_admin_endpoint_invokes_non_http_functions(tmp_path) -> None:
    from tests.support import http

    ticks = tmp_path / "ticks.txt"
    env = devhost_env({"AzureWebJobsStorage": "", "DEVHOST_TEST_TICK_FILE": str(ticks)})
    host = DevhostProcess(TEST_APP, tmp_path / "s.sqlite", free_port(), env)
    host.start()
    try:
        before = ticks.read_text().count("\n") if ticks.exists() else 0
        assert http("POST", host.base_url + "/admin/functions/tick", {})[0] == 202
        assert ticks.read_text().count("\n") >= before + 1
        assert http("POST", host.base_url + "/admin/functions/no_such_function", {})[0] == 404
        assert http("POST", host.base_url + "/admin/functions/echo", {})[0] == 404, "not for HTTP functions"
    finally:
        host.stop()
