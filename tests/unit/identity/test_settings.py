"""IdentitySettings from the environment: off by default, and refusing configurations that would trust too much."""

from __future__ import annotations

import pytest

from shared.identity import IdentitySettings

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
BEARER = {"WEFT_AUTH_MODE": "bearer", "WEFT_AUTH_TENANT_ID": TENANT, "WEFT_AUTH_AUDIENCE": "api://weft"}


def test_an_empty_environment_turns_identity_off() -> None:
    settings = IdentitySettings.from_env({})
    assert settings == IdentitySettings()
    assert not settings.enabled and not settings.bearer and not settings.easy_auth
    assert settings.clock_skew_s == 60 and settings.jwks_refresh_min_s == 60 and settings.http_timeout_s == 5
    assert settings.max_token_bytes == 8192 and settings.default_roles == frozenset()
    assert settings.algorithms == ("RS256",)


def test_the_tenant_gives_the_v2_issuer_and_the_v1_one_is_also_accepted() -> None:
    settings = IdentitySettings.from_env(BEARER)
    assert settings.issuer == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    assert settings.accepted_issuers == (settings.issuer, f"https://sts.windows.net/{TENANT}/")
    v2_only = IdentitySettings.from_env({**BEARER, "WEFT_AUTH_ACCEPT_V1_ISSUER": "false"})
    assert v2_only.accepted_issuers == (settings.issuer,)


@pytest.mark.parametrize(
    ("raw", "mode"),
    [("none", ()), ("NONE", ()), ("bearer", ("bearer",)), ("easy_auth", ("easy_auth",)),
     ("easy_auth,bearer", ("bearer", "easy_auth")), (" bearer , easy_auth ", ("bearer", "easy_auth"))],
)
def test_modes(raw: str, mode: tuple[str, ...]) -> None:
    assert IdentitySettings.from_env({**BEARER, "WEFT_AUTH_MODE": raw}).mode == mode


def test_lists_are_parsed() -> None:
    settings = IdentitySettings.from_env({
        **BEARER, "WEFT_AUTH_AUDIENCE": "6f1c4a8e-2b7d-4c19-9e0a-5d3b8f7a1c22, api://weft",
        "WEFT_AUTH_DEFAULT_ROLES": "Runs.Submit,Runs.ReadAll", "WEFT_AUTH_ISSUER": "https://issuer.example/t/v2.0/",
    })
    assert settings.audiences == ("6f1c4a8e-2b7d-4c19-9e0a-5d3b8f7a1c22", "api://weft")
    assert settings.default_roles == {"Runs.Submit", "Runs.ReadAll"}
    assert settings.issuer == "https://issuer.example/t/v2.0"


def test_the_service_caller_is_configurable() -> None:
    env = {"WEFT_AUTH_SERVICE_NAME": "ingest", "WEFT_AUTH_SERVICE_ROLES": "Runs.Submit,Runs.ReadAll"}
    caller = IdentitySettings.from_env(env).service_caller()
    assert (caller.key, caller.roles) == ("service/ingest", {"Runs.Submit", "Runs.ReadAll"})
    assert IdentitySettings.from_env({}).service_caller().roles == {"Runs.Submit"}


BAD = [
    ("unknown-mode", {"WEFT_AUTH_MODE": "basic"}, "unknown sources"),
    ("none-with-bearer", {"WEFT_AUTH_MODE": "none,bearer"}, "unknown sources"),
    ("bearer-without-tenant", {"WEFT_AUTH_MODE": "bearer", "WEFT_AUTH_AUDIENCE": "x"}, "WEFT_AUTH_TENANT_ID"),
    ("bearer-without-audience", {"WEFT_AUTH_MODE": "bearer", "WEFT_AUTH_TENANT_ID": TENANT}, "WEFT_AUTH_AUDIENCE"),
    ("hs256", {**BEARER, "WEFT_AUTH_ALGORITHMS": "RS256,HS256"}, "WEFT_AUTH_ALGORITHMS"),
    ("none-alg", {**BEARER, "WEFT_AUTH_ALGORITHMS": "none"}, "WEFT_AUTH_ALGORITHMS"),
    ("skew-too-large", {**BEARER, "WEFT_AUTH_CLOCK_SKEW_S": "3600"}, "WEFT_AUTH_CLOCK_SKEW_S"),
    ("negative-skew", {**BEARER, "WEFT_AUTH_CLOCK_SKEW_S": "-1"}, "WEFT_AUTH_CLOCK_SKEW_S"),
    ("http-issuer", {**BEARER, "WEFT_AUTH_ISSUER": "http://issuer.example/t/v2.0"}, "https"),
    ("not-a-number", {**BEARER, "WEFT_AUTH_HTTP_TIMEOUT_S": "soon"}, "WEFT_AUTH_HTTP_TIMEOUT_S"),
    ("tiny-token-limit", {**BEARER, "WEFT_AUTH_MAX_TOKEN_BYTES": "10"}, "WEFT_AUTH_MAX_TOKEN_BYTES"),
    ("bad-service-name", {"WEFT_AUTH_SERVICE_NAME": "a/b"}, "service caller"),
]


@pytest.mark.parametrize(("env", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_settings_are_refused_at_startup(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IdentitySettings.from_env(env)


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:8080/t/v2.0", "http://localhost:1/t/v2.0", "http://[::1]:2/t"])
def test_plain_http_issuers_are_allowed_on_loopback_only(issuer: str) -> None:
    assert IdentitySettings.from_env({**BEARER, "WEFT_AUTH_ISSUER": issuer}).issuer == issuer
