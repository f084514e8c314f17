"""Process-wide set-up: export to Azure Monitor once, and only when Weft is the one that should.

:func:`configure_telemetry` is called from every worker entry point (the first call does the work; later ones return
the same :class:`Telemetry`): activities and HTTP triggers through ``get_runtime()``, orchestrators through
:func:`telemetry_from_env`, so an instance whose first invocation is an orchestrator episode exports its run spans too.
What it does depends on :attr:`TelemetrySettings.exporter`:

- ``platform`` — ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true``: the Functions worker already configured Azure
  Monitor. Configuring it again would export every item twice, so Weft only logs that and uses the worker's global
  providers.
- ``azure_monitor`` — a connection string and no platform switch: ``configure_azure_monitor()`` with the
  ``service.name`` resource, a ``ManagedIdentityCredential`` when the authentication string says
  ``Authorization=AAD`` (built here, on first call, never at import), and *without* log export: the host runs in
  classic Application Insights mode and already ships the worker's log records, so exporting them here too would
  duplicate every trace. Spans and metrics are exported; instrumentations of the distro (Azure SDK, requests,
  urllib3, ...) add dependency spans for storage, Key Vault and OpenAI calls.
- ``none`` — no connection string: nothing is exported (local runs, tests); the Prometheus registry still counts.

A failure to configure the exporter (a malformed connection string) is logged and leaves the process on ``none``:
losing telemetry must not stop the app.

Whatever the exporter, the first call also lowers the HTTP client loggers (httpx, httpx2, httpcore) to WARNING:
httpx logs every request's full URL at INFO, and query strings can carry tool arguments or secrets. host.json cannot
do this: the Python worker relays every record under its function's ``Function.<name>.User`` category, not under
the logger's name. A level someone set on those loggers before (to debug a client) is left alone.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from shared.telemetry.core import Telemetry
from shared.telemetry.settings import Exporter, TelemetrySettings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

__all__ = ["configure_telemetry", "exporter_credential", "get_telemetry", "telemetry_from_env"]

_log = logging.getLogger(__name__)

_LOGS_EXPORTER_VARIABLE = "OTEL_LOGS_EXPORTER"

_HTTP_CLIENT_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2")
"""HTTP client loggers kept at WARNING: httpx/httpx2 log each request line (the full URL) at INFO, httpcore/httpcore2
each connection and header event at DEBUG."""

_lock = threading.Lock()
_configured: Telemetry | None = None
_fallback: Telemetry | None = None


def exporter_credential(settings: TelemetrySettings) -> TokenCredential | None:
    """The credential the Azure Monitor exporter ingests with: a managed identity for ``Authorization=AAD``, else None.

    ``ClientId=`` names a user-assigned identity; without it the system-assigned identity is used.
    """
    if not settings.uses_entra_ingestion:
        return None
    from azure.identity import ManagedIdentityCredential

    client_id = settings.ingestion_client_id
    return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()


@contextmanager
def _no_log_export() -> Iterator[None]:
    """``OTEL_LOGS_EXPORTER=none`` while the distro reads it.

    ``configure_azure_monitor`` 1.8 ignores a ``disable_logging=`` argument (it always takes the default from this
    environment variable), so the variable is the only switch. The previous value is put back afterwards.
    """
    previous = os.environ.pop(_LOGS_EXPORTER_VARIABLE, None)
    os.environ[_LOGS_EXPORTER_VARIABLE] = "none"
    try:
        yield
    finally:
        del os.environ[_LOGS_EXPORTER_VARIABLE]
        if previous is not None:
            os.environ[_LOGS_EXPORTER_VARIABLE] = previous


def _configure_azure_monitor(settings: TelemetrySettings) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    options: dict[str, Any] = {
        "connection_string": settings.connection_string,
        "resource": Resource.create({SERVICE_NAME: settings.service_name}),
    }
    credential = exporter_credential(settings)
    if credential is not None:
        options["credential"] = credential
    with _no_log_export():
        configure_azure_monitor(**options)


def _quiet_http_client_loggers() -> None:
    for name in _HTTP_CLIENT_LOGGERS:
        client_logger = logging.getLogger(name)
        if client_logger.level == logging.NOTSET:
            client_logger.setLevel(logging.WARNING)


def configure_telemetry(settings: TelemetrySettings) -> Telemetry:
    """Set up this process's telemetry once and return it; later calls return the same object.

    See the module docstring for what is configured. Safe to call from every entry point and thread.
    """
    global _configured
    with _lock:
        if _configured is not None:
            if settings != _configured.settings:
                _log.warning("telemetry is already configured; different settings in a later call are ignored")
            return _configured
        _quiet_http_client_loggers()
        exporter = settings.exporter
        if exporter is Exporter.PLATFORM:
            _log.info(
                "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY is true: the Functions worker exports to Azure Monitor, "
                "so Weft does not configure it again"
            )
        elif exporter is Exporter.AZURE_MONITOR:
            try:
                _configure_azure_monitor(settings)
            except Exception:
                _log.exception("could not configure the Azure Monitor exporter; telemetry will not be exported")
                exporter = Exporter.NONE
            else:
                _log.info(
                    "exporting telemetry to Azure Monitor as service %s (%s ingestion)", settings.service_name,
                    "Entra ID" if settings.uses_entra_ingestion else "key",
                )
        else:
            _log.info("APPLICATIONINSIGHTS_CONNECTION_STRING is not set: telemetry is not exported (Prometheus only)")
        # Metrics recorded before configuration (through get_telemetry) stay in the registry /api/metrics serves.
        shared_metrics = _fallback.metrics if _fallback is not None else None
        _configured = Telemetry(settings, exporter=exporter, metrics=shared_metrics)
        return _configured


def get_telemetry() -> Telemetry:
    """The configured :class:`Telemetry`, or (before :func:`configure_telemetry`) one on the global providers.

    The fallback exports nothing of its own and has default settings (content capture off); it is built once, on
    first use.
    """
    global _fallback
    with _lock:
        if _configured is not None:
            return _configured
        if _fallback is None:
            _fallback = Telemetry()
        return _fallback


_settings_refused = False


def telemetry_from_env() -> Telemetry:
    """The configured :class:`Telemetry`, configuring it from ``os.environ`` on the first call.

    For entry points that do not build the runtime (orchestrators): configuring is process set-up, done once and
    guarded by :func:`configure_telemetry`'s lock; later calls only return the object. Malformed telemetry settings
    are logged and give :func:`get_telemetry`'s fallback, so an orchestrator never fails because of telemetry.
    """
    global _settings_refused
    configured = _configured
    if configured is not None:
        return configured
    if _settings_refused:
        return get_telemetry()
    try:
        settings = TelemetrySettings.from_env(os.environ)
    except ValueError:
        _settings_refused = True  # said once: this runs on every replay and every settled tool call
        _log.warning("telemetry settings are malformed; telemetry is not configured here", exc_info=True)
        return get_telemetry()
    return configure_telemetry(settings)
