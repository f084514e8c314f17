"""TelemetrySettings: names, defaults, the exporter choice and the ingestion credential."""

from __future__ import annotations

import dataclasses

import pytest
from azure.identity import ManagedIdentityCredential

from shared.telemetry import Exporter, TelemetrySettings, exporter_credential

CONNECTION = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://x.example/"


def test_defaults_from_an_empty_environment():
    settings = TelemetrySettings.from_env({})
    assert settings == TelemetrySettings()
    assert (settings.connection_string, settings.authentication_string) == ("", "")
    assert (settings.platform_exporter, settings.capture_content) == (False, False)
    assert (settings.service_name, settings.ready_timeout_s) == ("weft", 2.0)
    assert settings.exporter is Exporter.NONE
    assert dataclasses.is_dataclass(settings)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.capture_content = True  # type: ignore[misc]


def test_every_setting_is_read_from_its_name():
    settings = TelemetrySettings.from_env({
        "APPLICATIONINSIGHTS_CONNECTION_STRING": f" {CONNECTION} ",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=abc;Authorization=AAD",
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
        "WEFT_TELEMETRY_CAPTURE_CONTENT": "1",
        "OTEL_SERVICE_NAME": "weft-prod",
        "WEFT_READY_TIMEOUT_S": "0.5",
    })
    assert settings == TelemetrySettings(
        connection_string=CONNECTION,
        authentication_string="ClientId=abc;Authorization=AAD",
        platform_exporter=True,
        capture_content=True,
        service_name="weft-prod",
        ready_timeout_s=0.5,
    )


def test_the_connection_string_is_kept_out_of_repr():
    assert "InstrumentationKey" not in repr(TelemetrySettings(connection_string=CONNECTION))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WEFT_TELEMETRY_CAPTURE_CONTENT": "maybe"}, "WEFT_TELEMETRY_CAPTURE_CONTENT"),
        ({"PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "yes please"}, "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"),
        ({"WEFT_READY_TIMEOUT_S": "soon"}, "WEFT_READY_TIMEOUT_S"),
        ({"WEFT_READY_TIMEOUT_S": "0"}, "WEFT_READY_TIMEOUT_S"),
    ],
    ids=["capture-not-bool", "platform-not-bool", "timeout-not-number", "timeout-zero"],
)
def test_malformed_values_name_the_setting(env, message):
    with pytest.raises(ValueError, match=message):
        TelemetrySettings.from_env(env)


@pytest.mark.parametrize(
    ("connection_string", "platform", "expected"),
    [
        ("", False, Exporter.NONE),
        (CONNECTION, False, Exporter.AZURE_MONITOR),
        (CONNECTION, True, Exporter.PLATFORM),
        ("", True, Exporter.PLATFORM),
    ],
    ids=["nothing", "connection-string", "platform-switch-wins", "platform-switch-alone"],
)
def test_the_exporter_choice(connection_string, platform, expected):
    settings = TelemetrySettings(connection_string=connection_string, platform_exporter=platform)
    assert settings.exporter is expected


@pytest.mark.parametrize(
    ("authentication", "entra", "client_id"),
    [
        ("", False, ""),
        ("ClientId=11111111-2222-3333-4444-555555555555;Authorization=AAD", True,
         "11111111-2222-3333-4444-555555555555"),
        ("Authorization=AAD", True, ""),
        ("clientid=abc; authorization=aad", True, "abc"),
        ("Authorization=Key", False, ""),
        ("garbage", False, ""),
    ],
    ids=["unset", "user-assigned", "system-assigned", "case-insensitive", "not-aad", "malformed"],
)
def test_the_authentication_string(authentication, entra, client_id):
    settings = TelemetrySettings(authentication_string=authentication)
    assert (settings.uses_entra_ingestion, settings.ingestion_client_id) == (entra, client_id)


def test_entra_ingestion_uses_a_managed_identity_credential():
    credential = exporter_credential(TelemetrySettings(authentication_string="ClientId=abc;Authorization=AAD"))
    assert isinstance(credential, ManagedIdentityCredential)
    assert isinstance(exporter_credential(TelemetrySettings(authentication_string="Authorization=AAD")),
                      ManagedIdentityCredential)


def test_key_ingestion_needs_no_credential():
    assert exporter_credential(TelemetrySettings(connection_string=CONNECTION)) is None
