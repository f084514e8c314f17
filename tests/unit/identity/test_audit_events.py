"""The ``weft.audit`` custom event: an OpenTelemetry log record that the Azure Monitor exporter sends as EventData."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from shared.identity.audit import AuditRecord, AuditTrail
from shared.identity.audit_store import MemoryAuditStore
from shared.telemetry.core import Telemetry
from shared.telemetry.events import CUSTOM_EVENT_NAME_ATTRIBUTE, CustomEvents, custom_events
from shared.telemetry.settings import Exporter, TelemetrySettings


@pytest.fixture
def exported() -> tuple[LoggerProvider, InMemoryLogRecordExporter]:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    return provider, exporter


def execution() -> AuditRecord:
    return AuditRecord(time=datetime(2026, 12, 7, 12, 0, tzinfo=UTC), caller="tenant/oid", caller_name="ops@x",
                       action="tool.execute", run_id="r1", step_id="s1", tool="send_email", args_sha256="a" * 64,
                       outcome="ok", attempt=2, correlation_id="corr")


def test_an_append_emits_a_custom_event_record(exported: tuple[LoggerProvider, InMemoryLogRecordExporter]) -> None:
    provider, exporter = exported
    trail = AuditTrail(MemoryAuditStore(), events=CustomEvents(provider))
    trail.append(execution())
    (log,) = exporter.get_finished_logs()
    attributes = dict(log.log_record.attributes or {})
    assert attributes[CUSTOM_EVENT_NAME_ATTRIBUTE] == "weft.audit"
    assert attributes["tool"] == "send_email" and attributes["attempt"] == "2" and attributes["caller"] == "tenant/oid"
    assert log.log_record.body == "weft.audit"


def test_the_azure_monitor_exporter_sends_it_as_event_data(
        exported: tuple[LoggerProvider, InMemoryLogRecordExporter]) -> None:
    from azure.monitor.opentelemetry.exporter.export.logs._exporter import _convert_log_to_envelope

    provider, exporter = exported
    CustomEvents(provider).emit("weft.audit", execution().event_properties())
    (log,) = exporter.get_finished_logs()
    envelope = _convert_log_to_envelope(log)
    assert envelope.name == "Microsoft.ApplicationInsights.Event"
    assert envelope.data.base_type == "EventData"
    data = envelope.data.base_data
    assert data.name == "weft.audit"
    assert data.properties["action"] == "tool.execute" and data.properties["args_sha256"] == "a" * 64
    assert CUSTOM_EVENT_NAME_ATTRIBUTE not in data.properties


def test_without_an_exporter_events_go_nowhere() -> None:
    events = custom_events(Telemetry(TelemetrySettings(), exporter=Exporter.NONE))
    assert not events.enabled
    events.emit("weft.audit", {"a": "b"})  # no error, nothing to send


def test_a_broken_azure_monitor_configuration_gives_disabled_events(caplog: pytest.LogCaptureFixture) -> None:
    settings = TelemetrySettings(connection_string="not a connection string")
    events = custom_events(Telemetry(settings, exporter=Exporter.AZURE_MONITOR))
    assert not events.enabled
    assert "could not set up custom events" in caplog.text


def test_platform_exporter_uses_the_global_logger_provider() -> None:
    assert custom_events(Telemetry(TelemetrySettings(platform_exporter=True), exporter=Exporter.PLATFORM)).enabled
