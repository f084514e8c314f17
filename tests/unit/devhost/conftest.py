from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.host import DevHost, HostOptions

TEST_APP = Path(__file__).resolve().parents[2] / "devhost_app"


def make_host(db: str = ":memory:", **kwargs: object) -> DevHost:
    options = HostOptions(app_dir=TEST_APP, db=db, serve_http=False, poll_queues=False, run_timers=False, **kwargs)
    return DevHost(options)


@pytest.fixture
def host() -> Iterator[DevHost]:
    """An in-process devhost (engine + workers, no HTTP) for the test app, on an in-memory store."""
    h = make_host().start()
    yield h
    h.stop()
