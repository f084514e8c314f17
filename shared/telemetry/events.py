"""Application Insights custom events (the ``customEvents`` table) through OpenTelemetry logs.

The Azure Monitor exporter turns a log record whose attributes carry ``microsoft.custom_event.name`` into an
``EventData`` item with that name; the record's other attributes become the event's ``customDimensions``. Records
are emitted on an OpenTelemetry logger directly, not through :mod:`logging`, so they reach Application Insights once,
as events, and never as traces. Where the logger comes from follows the process's exporter
(:attr:`Telemetry.exporter <shared.telemetry.core.Telemetry.exporter>`):

- ``platform`` — the Functions worker configured Azure Monitor with log export: its global logger provider.
- ``azure_monitor`` — Weft configures Azure Monitor *without* log export (the host already ships the worker's log
  records), so events get a logger provider of their own with an ``AzureMonitorLogExporter`` and nothing else,
  built on the first event and shared by the process.
- ``none`` — nothing is sent (local runs, tests).

Emitting never raises: a failure is logged and the caller goes on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from shared.telemetry.core import Telemetry
from shared.telemetry.settings import Exporter

if TYPE_CHECKING:
    from opentelemetry._logs import Logger, LoggerProvider

__all__ = ["CUSTOM_EVENT_NAME_ATTRIBUTE", "CustomEvents", "EventSink", "custom_events"]

CUSTOM_EVENT_NAME_ATTRIBUTE = "microsoft.custom_event.name"
"""The attribute that makes the Azure Monitor exporter send a log record as a custom event of that name."""

_SCOPE = "weft.events"

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_own_provider: LoggerProvider | None = None


class EventSink(Protocol):
    """Something that records named events with string properties."""

    def emit(self, name: str, properties: Mapping[str, str]) -> None:
        """Record one event; never raises."""
        ...


class CustomEvents:
    """Custom events on an OpenTelemetry logger provider; with none, every event is dropped."""

    def __init__(self, provider: LoggerProvider | None) -> None:
        self._logger: Logger | None = provider.get_logger(_SCOPE) if provider is not None else None

    @property
    def enabled(self) -> bool:
        """Whether events go anywhere."""
        return self._logger is not None

    def emit(self, name: str, properties: Mapping[str, str]) -> None:
        """Emit the custom event ``name`` (in the current trace context, so it joins the request's operation)."""
        if self._logger is None:
            return
        from opentelemetry._logs import SeverityNumber

        attributes: dict[str, Any] = {key: value for key, value in properties.items() if value is not None}
        attributes[CUSTOM_EVENT_NAME_ATTRIBUTE] = name
        try:
            self._logger.emit(body=name, severity_number=SeverityNumber.INFO, severity_text="INFO",
                              attributes=attributes)
        except Exception:
            _log.warning("could not emit the custom event %s", name, exc_info=True)


def _azure_monitor_provider(telemetry: Telemetry) -> LoggerProvider:
    """A logger provider that exports to Application Insights and is used for custom events only (built once)."""
    global _own_provider
    with _lock:
        if _own_provider is None:
            from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter
            from opentelemetry.sdk._logs import LoggerProvider as SdkLoggerProvider
            from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
            from opentelemetry.sdk.resources import SERVICE_NAME, Resource

            from shared.telemetry.azure_monitor import exporter_credential

            settings = telemetry.settings
            options: dict[str, Any] = {"connection_string": settings.connection_string}
            credential = exporter_credential(settings)
            if credential is not None:
                options["credential"] = credential
            provider = SdkLoggerProvider(resource=Resource.create({SERVICE_NAME: settings.service_name}))
            provider.add_log_record_processor(BatchLogRecordProcessor(AzureMonitorLogExporter(**options)))
            _own_provider = provider
        return _own_provider


def custom_events(telemetry: Telemetry) -> CustomEvents:
    """Custom events for this process's exporter (see the module docstring); a failure to build the exporter is
    logged and gives events that go nowhere."""
    if telemetry.exporter is Exporter.PLATFORM:
        from opentelemetry._logs import get_logger_provider

        return CustomEvents(get_logger_provider())
    if telemetry.exporter is Exporter.AZURE_MONITOR:
        try:
            return CustomEvents(_azure_monitor_provider(telemetry))
        except Exception:
            _log.exception("could not set up custom events for Azure Monitor; they will not be exported")
    return CustomEvents(None)
