"""Telemetry settings, read once from the environment, and the choice of exporter they imply."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from shared.settings import env_bool, env_float, env_str

__all__ = ["Exporter", "TelemetrySettings"]


class Exporter(StrEnum):
    """Who sends Weft's spans and metrics to Azure Monitor in this process."""

    AZURE_MONITOR = "azure_monitor"
    """Weft called ``configure_azure_monitor()`` (a connection string is set, the platform switch is not)."""
    PLATFORM = "platform"
    """The Functions worker does it (``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true``); Weft must not as well."""
    NONE = "none"
    """Nothing is exported (no connection string, or configuring the exporter failed): local runs and tests.
    The Prometheus registry still counts everything."""


@dataclass(frozen=True)
class TelemetrySettings:
    """Telemetry settings; build with :meth:`from_env`."""

    connection_string: str = field(default="", repr=False)
    """Application Insights connection string (APPLICATIONINSIGHTS_CONNECTION_STRING); empty exports nothing."""
    authentication_string: str = ""
    """``ClientId=<id>;Authorization=AAD`` for Entra ingestion (APPLICATIONINSIGHTS_AUTHENTICATION_STRING)."""
    platform_exporter: bool = False
    """The Functions worker configures Azure Monitor itself (PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY)."""
    capture_content: bool = False
    """Record prompts, completions, tool arguments, tool results and code in spans (WEFT_TELEMETRY_CAPTURE_CONTENT).
    Off by default: they may hold personal data and secrets."""
    service_name: str = "weft"
    """``service.name`` of the exported telemetry, the cloud role name in Application Insights (OTEL_SERVICE_NAME)."""
    ready_timeout_s: float = 2.0
    """Per-check timeout of ``GET /api/ready`` (WEFT_READY_TIMEOUT_S)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TelemetrySettings:
        """Read the settings from ``env`` (default ``os.environ``); raises ValueError on malformed values."""
        env = os.environ if env is None else env
        return cls(
            connection_string=env_str(env, "APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip(),
            authentication_string=env_str(env, "APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "").strip(),
            platform_exporter=env_bool(env, "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", cls.platform_exporter),
            capture_content=env_bool(env, "WEFT_TELEMETRY_CAPTURE_CONTENT", cls.capture_content),
            service_name=env_str(env, "OTEL_SERVICE_NAME", cls.service_name).strip(),
            ready_timeout_s=env_float(env, "WEFT_READY_TIMEOUT_S", cls.ready_timeout_s, minimum=0.001),
        )

    @property
    def exporter(self) -> Exporter:
        """Which exporter this configuration calls for: the platform switch wins, then the connection string."""
        if self.platform_exporter:
            return Exporter.PLATFORM
        if self.connection_string:
            return Exporter.AZURE_MONITOR
        return Exporter.NONE

    @property
    def uses_entra_ingestion(self) -> bool:
        """Whether the authentication string asks for Entra ID (``Authorization=AAD``) ingestion."""
        return self._auth_parts().get("authorization", "").upper() == "AAD"

    @property
    def ingestion_client_id(self) -> str:
        """The ``ClientId=`` of the authentication string (a user-assigned identity); empty for system-assigned."""
        return self._auth_parts().get("clientid", "")

    def _auth_parts(self) -> dict[str, str]:
        parts: dict[str, str] = {}
        for item in self.authentication_string.split(";"):
            key, sep, value = item.partition("=")
            if sep:
                parts[key.strip().lower()] = value.strip()
        return parts
