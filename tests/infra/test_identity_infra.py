"""Issue 12 in the Bicep: App Service Authentication (authsettingsV2, Entra provider), the identity, quota and audit
settings the app reads (accepted by the app's own settings classes), the quotas table, the runs queues, the audit
container's time-based immutability policy, and the app roles of the app registration (JSON for ``az ad app``)."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.identity.audit import AuditSettings
from shared.identity.caller import Role
from shared.identity.quotas import QuotaSettings
from shared.identity.settings import IdentitySettings

REPO_ROOT = Path(__file__).resolve().parents[2]
ENTRA = REPO_ROOT / "infra" / "entra"
AZURE_CLI_APP_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
"""The Azure CLI's public client id: pre-authorized, so ``az account get-access-token`` needs no consent prompt."""
SAMPLE = {"authClientId": "11111111-2222-3333-4444-555555555555",
          "effectiveAuthTenantId": "66666666-7777-8888-9999-000000000000"}


def accessor(value: Any) -> str:
    return value["operator"]["operands"]["operand_2"] if isinstance(value, dict) else value


def interpolate(value: Any) -> str:
    """A Bicep string with ``${authClientId}``-style holes and ``environment()`` filled from :data:`SAMPLE`."""
    text = value if isinstance(value, str) else json.dumps(value)
    text = text.replace("${environment().authentication.loginEndpoint}", "https://login.microsoftonline.com/")
    return re.sub(r"\$\{(\w+)\}", lambda m: SAMPLE[m[1]], text)


@pytest.fixture(scope="module")
def function_app(infra):
    return infra["modules/function-app.bicep"]


@pytest.fixture(scope="module")
def auth_config(function_app) -> tuple[Any, dict[str, Any]]:
    found = function_app.resources_of_type("Microsoft.Web/sites/config")
    assert set(found) == {"authSettings"}
    return function_app.condition(found["authSettings"]), function_app.body(found["authSettings"])


@pytest.fixture(scope="module")
def deployed_auth_settings(infra) -> dict[str, str]:
    """The WEFT_AUTH_* app settings main.bicep sets when an app registration is given, with sample ids filled in."""
    branches = infra.main.variable("authSettings")["operator"]["operands"]
    assert branches["condition"] == {"function": {"type": "empty", "parameters": {"item_to_test": "authClientId"}}}
    assert branches["true_value"] == {"WEFT_AUTH_MODE": "none"}
    values = {}
    for name, value in branches["false_value"].items():
        values[name] = SAMPLE[value] if value in SAMPLE else interpolate(value)
    return values


# ---------------------------------------------------------------------------------------------------- Easy Auth


def test_easy_auth_is_on_exactly_when_a_client_id_is_given(auth_config, function_app, infra):
    condition, body = auth_config
    assert json.dumps(condition) == json.dumps(
        {"operator": {"type": "not", "operands": {"bool_value": {"function": {
            "type": "empty", "parameters": {"item_to_test": "authClientId"}}}}}})
    assert body["name"] == "authsettingsV2" and body["parent"] == "site"
    assert function_app.parameter_default("authClientId") == ""
    _, module = infra.module_for("functionApp")
    assert module["params"]["authClientId"] == "authClientId"
    assert infra.main.parameter_default("authClientId") == ""


def test_easy_auth_requires_a_token_and_answers_401(auth_config):
    _, body = auth_config
    props = body["properties"]
    assert props["platform"]["enabled"] is True
    validation = props["globalValidation"]
    assert validation["requireAuthentication"] is True
    assert validation["unauthenticatedClientAction"] == "Return401"
    assert props["httpSettings"]["requireHttps"] is True
    assert props["login"]["tokenStore"]["enabled"] is False, "an API: no sessions, no stored tokens"


def test_health_stays_reachable_for_the_platform(auth_config, function_app):
    _, body = auth_config
    assert body["properties"]["globalValidation"]["excludedPaths"] == "authExcludedPaths"
    excluded = function_app.parameter_default("authExcludedPaths")
    assert "/api/health" in excluded
    # Only anonymous routes may be excluded: each one is declared AuthLevel.ANONYMOUS in the app.
    source = (REPO_ROOT / "activities" / "ops_api.py").read_text(encoding="utf-8")
    for path in excluded:
        route = path.removeprefix("/api/")
        assert re.search(rf'route="{route}"[^)]*AuthLevel\.ANONYMOUS', source), path


def test_entra_provider_validates_issuer_and_audiences(auth_config, deployed_auth_settings):
    _, body = auth_config
    entra = body["properties"]["identityProviders"]["azureActiveDirectory"]
    assert entra["enabled"] is True
    assert entra["registration"]["clientId"] == "authClientId"
    issuer = interpolate(entra["registration"]["openIdIssuer"].replace("authTenantId", "effectiveAuthTenantId"))
    assert issuer == deployed_auth_settings["WEFT_AUTH_ISSUER"], "the platform and the app trust the same issuer"
    audiences = [interpolate(a) if "$" in a else SAMPLE[a] for a in entra["validation"]["allowedAudiences"]]
    assert audiences == deployed_auth_settings["WEFT_AUTH_AUDIENCE"].split(",")
    assert "clientSecretSettingName" not in entra["registration"], "token validation needs no secret"


def test_the_app_accepts_the_deployed_identity_settings(deployed_auth_settings):
    assert deployed_auth_settings["WEFT_AUTH_MODE"] == "easy_auth"
    settings = IdentitySettings.from_env(deployed_auth_settings)
    assert settings.easy_auth and not settings.bearer
    assert settings.tenant_id == SAMPLE["effectiveAuthTenantId"]
    assert SAMPLE["authClientId"] in settings.audiences
    # The same settings with direct bearer validation added are complete too (issuer, audience).
    IdentitySettings.from_env({**deployed_auth_settings, "WEFT_AUTH_MODE": "easy_auth,bearer"})
    assert not IdentitySettings.from_env({"WEFT_AUTH_MODE": "none"}).enabled


# ------------------------------------------------------------------------------------------ quotas and audit


def base_settings(infra) -> dict[str, Any]:
    return infra.main.variable("baseAppSettings")


def test_the_app_accepts_the_deployed_quota_and_audit_settings(infra):
    base = base_settings(infra)
    main = infra.main
    env = {
        "WEFT_QUOTA_TABLE": main.variable(base["WEFT_QUOTA_TABLE"]),
        "WEFT_QUOTA_REQUESTS_PER_MINUTE": str(main.parameter_default("quotaRequestsPerMinute")),
        "WEFT_QUOTA_MAX_CONCURRENT_RUNS": str(main.parameter_default("quotaMaxConcurrentRuns")),
        "WEFT_AUDIT_CONTAINER": main.variable(base["WEFT_AUDIT_CONTAINER"]),
        "WEFT_AUDIT_RETENTION_DAYS": str(main.parameter_default("auditRetentionDays")),
    }
    for name in ("WEFT_QUOTA_REQUESTS_PER_MINUTE", "WEFT_QUOTA_MAX_CONCURRENT_RUNS", "WEFT_AUDIT_RETENTION_DAYS"):
        assert base[name]["function"]["type"] == "string", f"{name}: app settings are strings"
    quotas = QuotaSettings.from_env(env)
    audit = AuditSettings.from_env(env)
    assert (quotas.table, quotas.requests_per_minute) == ("weftquotas", 60)
    assert (audit.container, audit.retention_days) == ("weft-audit", 365)
    assert (quotas.table, audit.container) == (QuotaSettings().table, AuditSettings().container), "code defaults"
    assert infra.path(base["WEFT_TABLE_ACCOUNT_URL"]) == "storage.outputs.tableEndpoint"


def test_quota_and_runs_tables_are_created(infra):
    _, storage = infra.module_for("storage")
    assert storage["params"]["tableNames"] == ["quotaTableName", "runsTableName"]
    for variable, setting in (("quotaTableName", "WEFT_QUOTA_TABLE"), ("runsTableName", "WEFT_RUNS_TABLE")):
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,62}", infra.main.variable(variable))
        assert base_settings(infra)[setting] == variable
    template = infra["modules/storage.bicep"]
    tables = template.resources_of_type("Microsoft.Storage/storageAccounts/tableServices/tables")
    assert template.body(tables["appTables"])["name"] == "tableName"
    assert tables["appTables"]["config"]["loop_type"]["detail"]["array_name"] == "tableNames"


def test_runs_queues_are_the_ones_the_queue_trigger_uses(infra):
    _, storage = infra.module_for("storage")
    assert storage["params"]["queueNames"] == ["runsQueueName", "${runsQueueName}-poison"]
    name = infra.main.variable("runsQueueName")
    source = (REPO_ROOT / "activities" / "runs_queue.py").read_text(encoding="utf-8")
    assert f'queue_trigger(arg_name="msg", queue_name="{name}"' in source
    assert f'queue_name="{name}-poison"' in source
    # Only Entra identities with a queue data role can enqueue: no shared key, so no SAS either.
    account = infra["modules/storage.bicep"]
    _, resource = account.resource("Microsoft.Storage/storageAccounts")
    assert account.body(resource)["properties"]["allowSharedKeyAccess"] is False


def test_audit_container_has_a_time_based_immutability_policy_with_appends(infra):
    template = infra["modules/storage.bicep"]
    containers = template.resources_of_type("Microsoft.Storage/storageAccounts/blobServices/containers")
    assert template.body(containers["auditContainer"])["name"] == "auditContainerName"
    _, policy = template.resource("Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies")
    body = template.body(policy)
    assert (body["parent"], body["name"]) == ("auditContainer", "default")
    assert body["properties"] == {"immutabilityPeriodSinceCreationInDays": "auditRetentionDays",
                                  "allowProtectedAppendWrites": True}
    assert template.condition(policy) is None, "the policy is always there"


def test_retention_days_are_one_parameter_for_policy_and_app(infra):
    _, storage = infra.module_for("storage")
    assert storage["params"]["auditRetentionDays"] == "auditRetentionDays"
    assert storage["params"]["auditContainerName"] == "auditContainerName"
    base = base_settings(infra)
    assert base["WEFT_AUDIT_RETENTION_DAYS"]["function"]["parameters"]["value_to_convert"] == "auditRetentionDays"
    assert base["WEFT_AUDIT_CONTAINER"] == "auditContainerName"


# ------------------------------------------------------------------------------------------- app registration


def test_app_roles_are_the_roles_the_code_checks():
    roles = json.loads((ENTRA / "app-roles.json").read_text(encoding="utf-8"))
    assert sorted(role["value"] for role in roles) == sorted(role.value for role in Role)
    ids = [role["id"] for role in roles]
    assert len(set(ids)) == len(ids) and all(uuid.UUID(i) for i in ids)
    for role in roles:
        assert role["allowedMemberTypes"] == ["User", "Application"], "users, groups and other apps' identities"
        assert role["isEnabled"] is True and role["displayName"] and role["description"]


def test_api_exposes_a_scope_the_azure_cli_may_request():
    api = json.loads((ENTRA / "api.json").read_text(encoding="utf-8"))["api"]
    assert api["requestedAccessTokenVersion"] == 2, "v2 tokens: iss and aud are what WEFT_AUTH_* name"
    (scope,) = api["oauth2PermissionScopes"]
    assert scope["value"] == "user_impersonation" and scope["type"] == "User"
    preauthorized = json.loads((ENTRA / "api-preauthorized.json").read_text(encoding="utf-8"))["api"]
    (cli,) = preauthorized["preAuthorizedApplications"]
    assert cli == {"appId": AZURE_CLI_APP_ID, "delegatedPermissionIds": [scope["id"]]}
    # A PATCH replaces the whole api object: the second one repeats the first, so the scope stays.
    assert {key: value for key, value in preauthorized.items() if key != "preAuthorizedApplications"} == api


def test_operations_doc_explains_roles_tokens_queue_and_audit(operations_doc):
    for needle in ("az ad app create", "--app-roles @infra/entra/app-roles.json", "appRoleAssignedTo",
                   "az account get-access-token", "DefaultAzureCredential", "Storage Queue Data Message Sender",
                   "weft.audit", "immutability", "allowProtectedAppendWrites", "/api/health"):
        assert needle in operations_doc, needle
    for role in Role:
        assert f"`{role.value}`" in operations_doc, role.value
    for heading in ("Callers and roles", "Granting roles", "Getting a token", "Who can enqueue runs", "Audit trail"):
        assert re.search(rf"^#+ {re.escape(heading)}\s*$", operations_doc, re.MULTILINE), heading
