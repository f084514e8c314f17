"""configure_telemetry: Azure Monitor is configured only with a connection string and without the platform switch.

Each case runs in a fresh interpreter, because configuring installs process-wide OpenTelemetry providers (which can
be set once per process). The check is on what got installed — provider classes, the span exporters behind them, the
resource, the root logger's handlers — not on a patched function. The connection string points at a closed local
port, so nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CONNECTION = (
    "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
    "IngestionEndpoint=http://127.0.0.1:9/;LiveEndpoint=http://127.0.0.1:9/"
)

PROBE = r"""
import dataclasses, json, logging, os
from opentelemetry import metrics, trace
from shared.telemetry import TelemetrySettings, configure_telemetry

records = []
class Collect(logging.Handler):
    def emit(self, record):
        records.append(f"{record.levelname} {record.getMessage()}")
logging.getLogger("shared.telemetry").addHandler(Collect())
logging.getLogger("shared.telemetry").setLevel(logging.INFO)
logging.getLogger("httpcore").setLevel(logging.DEBUG)  # someone debugging the client: left as it is

settings = TelemetrySettings.from_env()
first = configure_telemetry(settings)
second = configure_telemetry(settings)
third = configure_telemetry(dataclasses.replace(settings, capture_content=True))

tracer_provider, meter_provider = trace.get_tracer_provider(), metrics.get_meter_provider()
# The SDK keeps its processors privately; reading them is the only way to see which exporter was installed.
processors = getattr(getattr(tracer_provider, "_active_span_processor", None), "_span_processors", ())
resource = getattr(tracer_provider, "resource", None)
print(json.dumps({
    "exporter": first.exporter.value,
    "same_object": first is second is third,
    "capture_content": third.capture_content,
    "tracer_provider": type(tracer_provider).__name__,
    "meter_provider": type(meter_provider).__name__,
    "span_exporters": [type(getattr(p, "span_exporter", p)).__name__ for p in processors],
    "service_name": resource.attributes.get("service.name") if resource is not None else None,
    "root_handlers": [type(h).__name__ for h in logging.getLogger().handlers],
    "logs_exporter_variable": os.environ.get("OTEL_LOGS_EXPORTER"),
    "log": records,
    "http_levels": {name: logging.getLevelName(logging.getLogger(name).level)
                    for name in ("httpx", "httpx2", "httpcore", "httpcore2")},
}))
"""


def probe(tmp_path: Path, script: str = PROBE, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("APPLICATIONINSIGHTS_", "PYTHON_APPLICATIONINSIGHTS_", "OTEL_", "WEFT_TELEMETRY_"))}
    clean.update({
        "PYTHONPATH": str(ROOT),
        "TMPDIR": str(tmp_path),  # the exporter's offline-storage folder
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        **env,
    })
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_without_a_connection_string_nothing_is_configured(tmp_path):
    state = probe(tmp_path)
    assert state["exporter"] == "none"
    assert (state["tracer_provider"], state["meter_provider"]) == ("ProxyTracerProvider", "_ProxyMeterProvider")
    assert state["span_exporters"] == []
    assert any("APPLICATIONINSIGHTS_CONNECTION_STRING is not set" in line for line in state["log"])
    assert state["same_object"] is True


def test_http_client_loggers_are_lowered_unless_set(tmp_path):
    # httpx logs every request's full URL at INFO; a level set before configuring is someone's choice.
    state = probe(tmp_path)
    assert state["http_levels"] == {"httpx": "WARNING", "httpx2": "WARNING", "httpcore": "DEBUG",
                                    "httpcore2": "WARNING"}


def test_the_platform_switch_means_weft_does_not_configure_it_again(tmp_path):
    state = probe(tmp_path, APPLICATIONINSIGHTS_CONNECTION_STRING=CONNECTION,
                  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY="true")
    assert state["exporter"] == "platform"
    assert (state["tracer_provider"], state["meter_provider"]) == ("ProxyTracerProvider", "_ProxyMeterProvider")
    assert any("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY" in line for line in state["log"])


def test_a_connection_string_configures_azure_monitor_once(tmp_path):
    state = probe(tmp_path, APPLICATIONINSIGHTS_CONNECTION_STRING=CONNECTION, OTEL_SERVICE_NAME="weft-test")
    assert state["exporter"] == "azure_monitor"
    assert (state["tracer_provider"], state["meter_provider"]) == ("TracerProvider", "MeterProvider")
    assert state["span_exporters"].count("AzureMonitorTraceExporter") == 1
    assert state["service_name"] == "weft-test"
    # Logs are not exported by the worker (the host already ships them), and the environment is left as it was.
    assert "LoggingHandler" not in state["root_handlers"]
    assert state["logs_exporter_variable"] is None
    # Idempotent: later calls return the first object, and different settings are reported, not applied.
    assert state["same_object"] is True
    assert state["capture_content"] is False
    assert any("already configured" in line for line in state["log"])


def test_a_malformed_connection_string_is_logged_and_exports_nothing(tmp_path):
    state = probe(tmp_path, APPLICATIONINSIGHTS_CONNECTION_STRING="InstrumentationKey=not-a-guid")
    assert state["exporter"] == "none"
    assert state["span_exporters"] == []
    assert any(line.startswith("ERROR could not configure the Azure Monitor exporter") for line in state["log"])


FROM_ENV_PROBE = r"""
import json, logging
from opentelemetry import trace
from shared.telemetry import TelemetrySettings, configure_telemetry, get_telemetry, telemetry_from_env

records = []
class Collect(logging.Handler):
    def emit(self, record):
        records.append(f"{record.levelname} {record.getMessage()}")
logging.getLogger("shared.telemetry").addHandler(Collect())

first = telemetry_from_env()   # what an orchestrator calls before anything else ran in the process
again = telemetry_from_env()
try:
    later = configure_telemetry(TelemetrySettings.from_env())  # get_runtime() in an activity, later
except ValueError:
    later = None
processors = getattr(getattr(trace.get_tracer_provider(), "_active_span_processor", None), "_span_processors", ())
print(json.dumps({
    "exporter": first.exporter.value,
    "same_object": first is again is later,
    "is_fallback": first is get_telemetry() and later is None,
    "capture_content": first.capture_content,
    "span_exporters": [type(getattr(p, "span_exporter", p)).__name__ for p in processors],
    "log": records,
}))
"""


def test_an_orchestrator_first_in_its_process_configures_the_exporter(tmp_path):
    state = probe(tmp_path, FROM_ENV_PROBE, APPLICATIONINSIGHTS_CONNECTION_STRING=CONNECTION,
                  WEFT_TELEMETRY_CAPTURE_CONTENT="true")
    assert state["exporter"] == "azure_monitor"
    assert state["span_exporters"].count("AzureMonitorTraceExporter") == 1
    assert state["capture_content"] is True
    assert state["same_object"] is True, "the runtime's configure_telemetry later gets the same object"


def test_malformed_settings_leave_an_orchestrator_on_the_fallback(tmp_path):
    state = probe(tmp_path, FROM_ENV_PROBE, WEFT_TELEMETRY_CAPTURE_CONTENT="maybe")
    assert state["is_fallback"] is True
    assert state["span_exporters"] == []
    warnings = [line for line in state["log"] if line.startswith("WARNING telemetry settings are malformed")]
    assert len(warnings) == 1, "said once, not on every call"
