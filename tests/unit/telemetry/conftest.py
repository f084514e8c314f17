"""Fixtures: an isolated OpenTelemetry pipeline per test (see support.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shared.telemetry import Telemetry
from tests.unit.telemetry.support import Pipeline


@pytest.fixture
def pipeline() -> Pipeline:
    return Pipeline()


@pytest.fixture
def telemetry(pipeline: Pipeline) -> Telemetry:
    return pipeline.telemetry()


@pytest.fixture
def make_telemetry(pipeline: Pipeline) -> Callable[..., Telemetry]:
    return pipeline.telemetry
