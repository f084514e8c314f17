"""shared.telemetry and shared.health: every public callable documented, and importing them does no work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import shared.health
import shared.telemetry

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("module", [shared.telemetry, shared.health], ids=["telemetry", "health"])
def test_every_public_name_exists_and_is_documented(module):
    for name in module.__all__:
        value = getattr(module, name)
        if callable(value) and not isinstance(value, str):
            assert (value.__doc__ or "").strip(), f"{module.__name__}.{name} has no docstring"


def test_importing_builds_nothing():
    code = (
        "import json, sys\n"
        "import shared.telemetry, shared.health\n"
        "from opentelemetry import trace, metrics\n"
        "print(json.dumps({'modules': sorted(m for m in sys.modules if m.startswith(('azure.monitor', "
        "'azure.identity', 'azure.functions'))), 'tracer_provider': type(trace.get_tracer_provider()).__name__,"
        " 'meter_provider': type(metrics.get_meter_provider()).__name__}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    state = json.loads(done.stdout)
    assert state == {"modules": [], "tracer_provider": "ProxyTracerProvider", "meter_provider": "_ProxyMeterProvider"}


def test_get_telemetry_before_configuration_is_a_fallback_on_the_global_providers():
    telemetry = shared.telemetry.get_telemetry()
    assert telemetry is shared.telemetry.get_telemetry()
    assert telemetry.capture_content is False
