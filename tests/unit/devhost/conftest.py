from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.host import DevHost, HostOptions

TEST_APP = Path(__file__).resolve().parents[2] / "devhost_app"


def make_host(db: str = ":memory:", **kwargs: object) -> DevHost:
    options = HostOptions(app_dir=TEST_APP, db=db, serve_http=False, poll_queues=False, run_timers=False, **kwargs)
    return DevHost(options)


@pytest.fixture(params=[False, True], ids=["in-process", "orchestrator-process"])
def host(request: pytest.FixtureRequest) -> Iterator[DevHost]:
    """A devhost (engine + workers, no HTTP) for the test app, on an in-memory store: orchestrators replayed in this
    process, or in the child process ``python -m devhost serve`` uses (:mod:`devhost.orchestrator_process`)."""
    h = make_host(orchestrator_process=request.param).start()
    if h.orchestrator_process is not None:
        h.orchestrator_process.wait_ready()  # so that timings measure replays, not the child importing the app
    yield h
    h.stop()
