"""Readiness (bounded, concurrent checks) and liveness (no dependency calls)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from shared.health import (
    BlobContainerCheck,
    CatalogCheck,
    CheckResult,
    CheckStatus,
    KeyVaultCheck,
    LlmConfigCheck,
    LocalFolderCheck,
    SearchIndexCheck,
    SessionPoolCheck,
    liveness,
    readiness_body,
    run_checks,
)
from shared.llm.chat import LLM_NOT_CONFIGURED_MESSAGE, LlmSettings

# ------------------------------------------------------------------------------------------------------ fakes


class StaticCheck:
    """A check that answers at once."""

    def __init__(self, name: str, result: CheckResult) -> None:
        self.name = name
        self.result = result

    def check(self) -> CheckResult:
        return self.result


class HangingCheck:
    """A check that blocks until the test releases it (a dependency that stopped answering)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.release = threading.Event()
        self.finished = threading.Event()
        self.starts = 0

    def check(self) -> CheckResult:
        self.starts += 1
        try:
            self.release.wait()
            return CheckResult.ok("answered late")
        finally:
            self.finished.set()


class RaisingCheck:
    name = "raises"

    def check(self) -> CheckResult:
        raise ConnectionResetError("peer went away")


class FakeContainer:
    """The one ``ContainerClient`` call the storage check makes."""

    container_name = "weft-payloads"

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls = 0

    def get_container_properties(self) -> dict[str, str]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return {"name": self.container_name}


class FakePaged:
    def __init__(self, pages: list[list[str]], error: Exception | None) -> None:
        self.pages = pages
        self.error = error

    def by_page(self) -> Iterator[Iterator[str]]:
        if self.error is not None:
            raise self.error
        return (iter(page) for page in self.pages)


class FakeSecretClient:
    """The two ``SecretClient`` calls the Key Vault check may make."""

    def __init__(self, secrets: dict[str, str], error: Exception | None = None) -> None:
        self.secrets = secrets
        self.error = error
        self.list_kwargs: dict[str, object] | None = None

    def get_secret(self, name: str) -> str:
        if self.error is not None:
            raise self.error
        if name not in self.secrets:
            raise ResourceNotFoundError(f"secret {name} not found")
        return self.secrets[name]

    def list_properties_of_secrets(self, **kwargs: object) -> FakePaged:
        self.list_kwargs = kwargs
        return FakePaged([list(self.secrets)], self.error)


@pytest.fixture
def hanging(request) -> Iterator[HangingCheck]:
    check = HangingCheck(f"hang-{request.node.name}")  # unique: in-flight probes are tracked by name
    yield check
    check.release.set()
    assert check.finished.wait(10)


# --------------------------------------------------------------------------------------------------- run_checks


def test_a_hanging_check_fails_within_the_timeout_and_the_others_still_answer(hanging):
    started = time.perf_counter()
    ready, results = run_checks([StaticCheck("catalog", CheckResult.ok("3 tools")), hanging], timeout_s=0.2)
    elapsed = time.perf_counter() - started

    assert elapsed < 2.0  # bounded by the timeout (0.2 s), with generous slack for a loaded machine
    assert ready is False
    catalog, hung = results
    assert (catalog.name, catalog.status, catalog.detail) == ("catalog", CheckStatus.OK, "3 tools")
    assert (hung.name, hung.status) == (hanging.name, CheckStatus.FAIL)
    assert hung.detail == "no answer within 0.2 s"
    assert 0.0 < hung.latency_ms <= elapsed * 1000.0


def test_a_check_still_running_is_joined_not_started_again(hanging):
    for _ in range(3):
        ready, [result] = run_checks([hanging], timeout_s=0.05)
        assert (ready, result.status) == (False, CheckStatus.FAIL)
    assert hanging.starts == 1

    hanging.release.set()
    assert hanging.finished.wait(10)
    ready, [result] = run_checks([hanging], timeout_s=5.0)
    assert (ready, result.status, result.detail) == (True, CheckStatus.OK, "answered late")


def test_an_unconfigured_llm_is_skipped_and_the_app_stays_ready():
    ready, results = run_checks(
        [LlmConfigCheck(LlmSettings.from_env({})), KeyVaultCheck(None), StaticCheck("catalog", CheckResult.ok())],
        timeout_s=2.0,
    )
    assert ready is True
    llm, vault, _ = results
    assert (llm.name, llm.status, llm.detail) == ("llm", CheckStatus.SKIPPED, LLM_NOT_CONFIGURED_MESSAGE)
    assert (vault.name, vault.status) == ("key_vault", CheckStatus.SKIPPED)
    assert "KEY_VAULT_URL" in vault.detail


def test_failing_storage_makes_the_app_not_ready(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    ready, [storage, llm] = run_checks(
        [LocalFolderCheck(not_a_folder), LlmConfigCheck(LlmSettings.from_env({}))], timeout_s=2.0
    )
    assert ready is False
    assert (storage.name, storage.status) == ("storage", CheckStatus.FAIL)
    assert "not writable" in storage.detail and str(tmp_path) not in storage.detail  # the body is anonymous
    assert llm.status is CheckStatus.SKIPPED


def test_a_check_that_raises_fails_with_the_exception():
    ready, [result] = run_checks([RaisingCheck()], timeout_s=2.0)
    assert ready is False
    assert (result.status, result.detail) == (CheckStatus.FAIL, "ConnectionResetError; the log has the error")


def test_results_keep_the_order_of_the_checks_and_get_name_and_latency():
    checks = [StaticCheck(f"c{i}", CheckResult.ok()) for i in range(5)]
    ready, results = run_checks(checks, timeout_s=2.0)
    assert ready is True
    assert [r.name for r in results] == ["c0", "c1", "c2", "c3", "c4"]
    assert all(r.latency_ms >= 0.0 for r in results)


def test_check_names_must_be_unique():
    with pytest.raises(ValueError, match="unique"):
        run_checks([StaticCheck("x", CheckResult.ok()), StaticCheck("x", CheckResult.ok())], timeout_s=1.0)


def test_no_checks_means_ready():
    assert run_checks([], timeout_s=1.0) == (True, [])


# ----------------------------------------------------------------------------------------------- the checks


def test_a_writable_folder_passes_and_is_left_clean(tmp_path):
    folder = tmp_path / "state" / "nested"
    result = LocalFolderCheck(folder).check()
    assert result.status is CheckStatus.OK
    assert list(folder.iterdir()) == []


def _http_error(status: int, code: str) -> HttpResponseError:
    error = HttpResponseError(f"Operation returned {status} for https://acct.blob.core.windows.net/weft-payloads")
    error.status_code, error.error_code = status, code
    return error


@pytest.mark.parametrize(
    ("error", "status", "detail"),
    [
        (None, CheckStatus.OK, "the payload container is reachable"),
        (ResourceNotFoundError("ContainerNotFound"), CheckStatus.OK, "does not exist yet"),
        (ServiceRequestError("connection refused"), CheckStatus.FAIL, "ServiceRequestError; the log has the error"),
        (ClientAuthenticationError("403 AuthorizationPermissionMismatch"), CheckStatus.FAIL,
         "ClientAuthenticationError"),
        (_http_error(403, "AuthorizationPermissionMismatch"), CheckStatus.FAIL,
         "HttpResponseError (403, AuthorizationPermissionMismatch); the log has the error"),
    ],
    ids=["reachable", "container-missing", "unreachable", "forbidden", "http-status"],
)
def test_blob_storage(error, status, detail):
    container = FakeContainer(error)
    ready, [result] = run_checks([BlobContainerCheck(container)], timeout_s=2.0)
    assert (result.name, result.status) == ("storage", status)
    assert detail in result.detail and "acct.blob" not in result.detail  # the body is anonymous
    assert "weft-payloads" not in result.detail  # nor a resource name
    assert ready is (status is CheckStatus.OK)
    assert container.calls == 1


@pytest.mark.parametrize(
    ("client", "secret_name", "status", "detail"),
    [
        (FakeSecretClient({"llm-key": "s3cr3t"}), "llm-key", CheckStatus.OK, "the configured secret is readable"),
        (FakeSecretClient({}), "llm-key", CheckStatus.FAIL, "the configured secret does not exist"),
        (FakeSecretClient({"a": "s3cr3t"}), None, CheckStatus.OK, "vault reachable"),
        (FakeSecretClient({}, ClientAuthenticationError("no token")), None, CheckStatus.FAIL,
         "ClientAuthenticationError"),
        (None, None, CheckStatus.SKIPPED, "KEY_VAULT_URL is not set"),
    ],
    ids=["named-secret", "named-secret-missing", "list-page", "auth-failure", "not-configured"],
)
def test_key_vault(client, secret_name, status, detail, caplog):
    caplog.set_level("DEBUG", logger="shared.health")
    ready, [result] = run_checks([KeyVaultCheck(client, secret_name=secret_name)], timeout_s=2.0)
    assert (result.name, result.status) == ("key_vault", status)
    assert detail in result.detail
    assert "s3cr3t" not in result.detail and "s3cr3t" not in caplog.text
    assert "llm-key" not in result.detail  # the body is anonymous: no resource names; the log has it
    assert secret_name is None or f"secret {secret_name}" in caplog.text
    assert ready is (status is not CheckStatus.FAIL)


def test_the_key_vault_list_probe_asks_for_one_item():
    client = FakeSecretClient({"a": "1", "b": "2"})
    KeyVaultCheck(client).check()
    assert client.list_kwargs == {"max_page_size": 1}


@pytest.mark.parametrize(
    ("env", "status", "detail"),
    [
        ({}, CheckStatus.SKIPPED, LLM_NOT_CONFIGURED_MESSAGE),
        ({"AZURE_OPENAI_ENDPOINT": "https://oai.example.com", "LLM_PLANNER_DEPLOYMENT": "planner"},
         CheckStatus.OK, "azure_openai: deployments configured"),
        ({"AZURE_OPENAI_ENDPOINT": "https://oai.example.com"}, CheckStatus.FAIL, "LLM_PLANNER_DEPLOYMENT"),
        ({"LLM_PROVIDER": "azure_openai", "LLM_PLANNER_DEPLOYMENT": "p"}, CheckStatus.FAIL, "AZURE_OPENAI_ENDPOINT"),
        ({"LLM_BASE_URL": "http://localhost:11434/v1", "LLM_PLANNER_DEPLOYMENT": "llama",
          "LLM_WORKER_DEPLOYMENT": "small"}, CheckStatus.OK, "openai_compatible: deployments configured"),
    ],
    ids=["not-configured", "azure", "azure-without-deployment", "azure-without-endpoint", "compatible"],
)
def test_llm_configuration(env, status, detail, caplog):
    caplog.set_level("DEBUG", logger="shared.health")
    result = LlmConfigCheck(LlmSettings.from_env(env)).check()
    assert result.status is status
    assert detail in result.detail
    deployments = {env.get("LLM_PLANNER_DEPLOYMENT"), env.get("LLM_WORKER_DEPLOYMENT")} - {None}
    assert not any(f"={name}" in result.detail for name in deployments)  # the body is anonymous; the log has them
    assert status is not CheckStatus.OK or all(f"={name}" in caplog.text for name in deployments)


@pytest.mark.parametrize(
    ("check", "status"),
    [
        (CatalogCheck(lambda: 12), CheckStatus.OK),
        (CatalogCheck(lambda: 0), CheckStatus.FAIL),
        (SearchIndexCheck(lambda: True), CheckStatus.OK),
        (SearchIndexCheck(lambda: False), CheckStatus.FAIL),
    ],
    ids=["catalog-loaded", "catalog-empty", "index-loaded", "index-missing"],
)
def test_catalog_and_search_index(check, status):
    assert check.check().status is status


def _no_token() -> float:
    raise ClientAuthenticationError("ManagedIdentityCredential authentication unavailable")


@pytest.mark.parametrize(
    ("lifetime", "status", "detail"),
    [
        (lambda: 3599.6, CheckStatus.OK, "token for the session pool (valid 3600 s)"),
        (lambda: -5.0, CheckStatus.FAIL, "the token for the session pool has expired"),
        (_no_token, CheckStatus.FAIL, "no token for the session pool: ClientAuthenticationError"),
    ],
    ids=["token", "expired", "no-identity"],
)
def test_session_pool(lifetime, status, detail):
    check = SessionPoolCheck("https://pool.example/subscriptions/x/sessionPools/p", lifetime)
    result = check.check()
    assert check.name == "session_pool"
    assert result.status is status and result.detail.startswith(detail) and "pool.example" not in result.detail


# ---------------------------------------------------------------------------------------------- the bodies


def test_the_readiness_body():
    _, results = run_checks([StaticCheck("catalog", CheckResult.ok("3 tools")),
                             StaticCheck("llm", CheckResult.skipped("set AZURE_OPENAI_ENDPOINT"))], timeout_s=2.0)
    body = readiness_body(True, results)
    assert body["status"] == "ready"
    assert [(c["name"], c["status"], c["detail"]) for c in body["checks"]] == [
        ("catalog", "ok", "3 tools"), ("llm", "skipped", "set AZURE_OPENAI_ENDPOINT"),
    ]
    assert readiness_body(False, [])["status"] == "not_ready"


def test_liveness_reports_version_and_uptime_without_calling_anything():
    body = liveness("1.2.3", clock=lambda: 10**9)
    assert set(body) == {"status", "version", "uptime_s"}
    assert (body["status"], body["version"]) == ("ok", "1.2.3")
    assert body["uptime_s"] > 0


def test_liveness_uptime_is_never_negative():
    assert liveness(clock=lambda: 0.0)["uptime_s"] == 0.0


def test_local_folder_check_accepts_str_paths(tmp_path):
    assert LocalFolderCheck(str(tmp_path)).check().status is CheckStatus.OK
    assert isinstance(LocalFolderCheck(Path(tmp_path)).name, str)
