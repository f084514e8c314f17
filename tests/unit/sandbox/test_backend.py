"""Choosing where code runs: WEFT_SANDBOX_BACKEND and the session pool settings."""

from __future__ import annotations

from typing import Any

import pytest

from shared.sandbox import (
    DynamicSessionsExecutor,
    ProcessSandbox,
    SandboxBackend,
    build_code_executor,
    default_executor,
)

POOL = "https://westeurope.dynamicsessions.io/subscriptions/s/resourceGroups/rg/sessionPools/weft"


def test_default_is_the_process_wide_local_sandbox() -> None:
    backend = SandboxBackend.from_env({})
    assert backend.kind == "local"

    def no_credential() -> Any:
        raise AssertionError("a local sandbox needs no credential")

    executor = build_code_executor(backend, no_credential)
    assert isinstance(executor, ProcessSandbox) and executor is default_executor()


def test_session_pool_backend_uses_the_apps_credential() -> None:
    backend = SandboxBackend.from_env({"WEFT_SANDBOX_BACKEND": "dynamic_sessions", "WEFT_SESSION_POOL_ENDPOINT": POOL,
                                       "WEFT_SESSION_TIMEOUT_S": "45"})
    credentials: list[object] = []

    def credential() -> Any:
        credentials.append(object())
        return credentials[-1]

    executor = build_code_executor(backend, credential)
    assert isinstance(executor, DynamicSessionsExecutor) and len(credentials) == 1
    assert (backend.session_pool_endpoint, backend.session_timeout_s) == (POOL, 45.0)
    executor.close()


@pytest.mark.parametrize(("env", "setting"), [
    pytest.param({"WEFT_SANDBOX_BACKEND": "docker"}, "WEFT_SANDBOX_BACKEND", id="unknown-backend"),
    pytest.param({"WEFT_SANDBOX_BACKEND": "dynamic_sessions"}, "WEFT_SESSION_POOL_ENDPOINT", id="no-endpoint"),
    pytest.param({"WEFT_SANDBOX_BACKEND": "dynamic_sessions", "WEFT_SESSION_POOL_ENDPOINT": "http://pool.example"},
                 "WEFT_SESSION_POOL_ENDPOINT", id="plain-http"),
    pytest.param({"WEFT_SESSION_TIMEOUT_S": "0"}, "WEFT_SESSION_TIMEOUT_S", id="zero-timeout"),
])
def test_bad_settings_name_the_setting(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ValueError, match=setting):
        SandboxBackend.from_env(env)


def test_loopback_pool_may_use_http_and_case_is_ignored() -> None:
    backend = SandboxBackend.from_env({"WEFT_SANDBOX_BACKEND": " Dynamic_Sessions ",
                                       "WEFT_SESSION_POOL_ENDPOINT": "http://127.0.0.1:8123/pool"})
    assert backend.kind == "dynamic_sessions"
