// Weft: Durable Functions app on Flex Consumption with keyless access to storage, Key Vault, Azure OpenAI and
// Application Insights through one user-assigned identity. Deployed with `azd up` (see docs/operations.md).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; part of every resource name and the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Azure region for all resources (Azure OpenAI may use openAiLocation instead).')
param location string

@description('Object id of the user or pipeline principal running azd (AZURE_PRINCIPAL_ID): Key Vault Secrets Officer on the vault and, with the scheduler, DTS dashboard access. Empty to skip.')
param principalId string = ''

@description('Resource group name; empty for rg-<environmentName>.')
param resourceGroupName string = ''

@description('Region of the Azure OpenAI account; empty for location. Model and quota availability differ per region.')
param openAiLocation string = ''

@description('Deployment name the app uses for planning calls (LLM_PLANNER_DEPLOYMENT).')
param plannerDeploymentName string = 'planner'

@description('Model behind the planner deployment.')
param plannerModelName string = 'gpt-5-mini'

@description('Version of the planner model.')
param plannerModelVersion string = '2025-08-07'

@description('Planner capacity in thousands of tokens per minute.')
@minValue(1)
param plannerCapacity int = 50

@description('Deployment name the app uses for worker calls (LLM_WORKER_DEPLOYMENT).')
param workerDeploymentName string = 'worker'

@description('Model behind the worker deployment.')
param workerModelName string = 'gpt-5-nano'

@description('Version of the worker model.')
param workerModelVersion string = '2025-08-07'

@description('Worker capacity in thousands of tokens per minute.')
@minValue(1)
param workerCapacity int = 100

@description('SKU (deployment type) of both model deployments.')
@allowed([
  'GlobalStandard'
  'DataZoneStandard'
  'Standard'
])
param openAiDeploymentSkuName string = 'GlobalStandard'

@description('Durable task hub name (TASKHUB_NAME); with the scheduler it is also the task hub resource name.')
@minLength(3)
@maxLength(45)
param taskHubName string = 'weft'

@description('Use the Durable Task Scheduler backend instead of Azure Storage for orchestration state.')
param enableDurableTaskScheduler bool = false

@description('Deploy an Azure Container Apps session pool and run model-written code there (WEFT_SANDBOX_BACKEND=dynamic_sessions).')
param enableSessionPool bool = false

@description('Memory per function app instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound of function app instances.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Third-party secrets as Key Vault references: app setting name -> secret name. Add the secret to the vault before the app needs it.')
param keyVaultSecretSettings object = {}

@description('Extra app settings, e.g. the optional tuning knobs listed in docs/operations.md. Settings made in the portal are removed by the next provision, so keep them here. Names this template sets win; do not repeat the AzureWebJobsStorage__*, AZURE_CLIENT_ID or APPLICATIONINSIGHTS_* names.')
param additionalAppSettings object = {}

@description('Days a deleted Key Vault stays recoverable (and, with purge protection, unpurgeable).')
@minValue(7)
@maxValue(90)
param keyVaultSoftDeleteRetentionInDays int = 90

@description('Client id of the Entra ID app registration that callers get tokens for (docs/operations.md, "Callers and roles"). Empty: App Service Authentication stays off, WEFT_AUTH_MODE is none and function keys alone guard the API.')
param authClientId string = ''

@description('Tenant of the app registration; empty for the deployment\'s tenant.')
param authTenantId string = ''

@description('Requests per minute one caller may make (WEFT_QUOTA_REQUESTS_PER_MINUTE), counted in the quotas table every instance shares.')
@minValue(1)
param quotaRequestsPerMinute int = 60

@description('Runs one caller may have running at once (WEFT_QUOTA_MAX_CONCURRENT_RUNS).')
@minValue(1)
param quotaMaxConcurrentRuns int = 10

@description('Days every audit record stays immutable (the audit container\'s time-based retention) and is kept (WEFT_AUDIT_RETENTION_DAYS).')
@minValue(1)
@maxValue(146000)
param auditRetentionDays int = 365

@description('Address that gets alert and budget e-mails; empty for none. With no address and no webhook there is no action group: the alerts still fire in the portal.')
param alertEmail string = ''

@description('HTTPS endpoint that gets alerts (common alert schema); empty for none.')
@secure()
param alertWebhookUrl string = ''

@description('Tokens (input + output) in 24 hours above which the token-spend alert fires.')
@minValue(1)
param alertDailyTokenLimit int = 5000000

@description('Minutes a run may wait for an approval before the approval alert fires.')
@minValue(5)
@maxValue(1440)
param alertApprovalWaitMinutes int = 30

@description('Deploy the availability test that calls GET /api/ready from three regions every 15 minutes (billed per run).')
param enableReadinessTest bool = true

@description('Monthly cost budget of the resource group, in the billing currency; 0 for no budget.')
@minValue(0)
param budgetAmount int = 200

@description('Percent of budgetAmount actually spent that sends the first budget notification (the second is at 100, the forecast one at 100).')
@minValue(1)
@maxValue(1000)
param budgetWarningPercent int = 80

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = '${abbrs.webSitesFunctions}${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var embeddingCacheContainerName = 'embedding-cache'
var payloadContainerName = 'weft-payloads'
var sourceRegistryContainerName = 'weft-sources'
var breakerContainerName = 'weft-breakers'
var auditContainerName = 'weft-audit'
var quotaTableName = 'weftquotas'
var runsTableName = 'weftruns'
var runsQueueName = 'runs'
var effectiveAuthTenantId = empty(authTenantId) ? tenant().tenantId : authTenantId

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? '${abbrs.resourcesResourceGroups}${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
    identityPrincipalId: identity.outputs.principalId
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    appContainerNames: [
      embeddingCacheContainerName
      payloadContainerName
      sourceRegistryContainerName
      breakerContainerName
    ]
    auditContainerName: auditContainerName
    auditRetentionDays: auditRetentionDays
    tableNames: [
      quotaTableName
      runsTableName
    ]
    queueNames: [
      runsQueueName
      '${runsQueueName}-poison'
    ]
    identityPrincipalId: identity.outputs.principalId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    identityPrincipalId: identity.outputs.principalId
    deployerPrincipalId: principalId
    softDeleteRetentionInDays: keyVaultSoftDeleteRetentionInDays
  }
}

module openAi 'modules/openai.bicep' = {
  name: 'openai'
  scope: rg
  params: {
    name: '${abbrs.cognitiveServicesAccounts}${resourceToken}'
    location: empty(openAiLocation) ? location : openAiLocation
    tags: tags
    identityPrincipalId: identity.outputs.principalId
    planner: {
      deploymentName: plannerDeploymentName
      modelName: plannerModelName
      modelVersion: plannerModelVersion
      skuName: openAiDeploymentSkuName
      capacity: plannerCapacity
    }
    worker: {
      deploymentName: workerDeploymentName
      modelName: workerModelName
      modelVersion: workerModelVersion
      skuName: openAiDeploymentSkuName
      capacity: workerCapacity
    }
  }
}

module durableTaskScheduler 'modules/durable-task-scheduler.bicep' = if (enableDurableTaskScheduler) {
  name: 'durable-task-scheduler'
  scope: rg
  params: {
    name: '${abbrs.durableTaskSchedulers}${resourceToken}'
    location: location
    tags: tags
    taskHubName: taskHubName
    identityPrincipalId: identity.outputs.principalId
    deployerPrincipalId: principalId
  }
}

module sessionPool 'modules/session-pool.bicep' = if (enableSessionPool) {
  name: 'session-pool'
  scope: rg
  params: {
    name: '${abbrs.appContainerAppsSessionPools}${resourceToken}'
    location: location
    tags: tags
    identityPrincipalId: identity.outputs.principalId
  }
}

// Settings the app reads (the subsystems' settings objects, composed in shared/runtime.py). Non-secret values only;
// third-party secrets arrive as Key Vault references through keyVaultSecretSettings.
var baseAppSettings = {
  TASKHUB_NAME: taskHubName
  AZURE_OPENAI_ENDPOINT: openAi.outputs.endpoint
  LLM_PLANNER_DEPLOYMENT: openAi.outputs.plannerDeploymentName
  LLM_WORKER_DEPLOYMENT: openAi.outputs.workerDeploymentName
  KEY_VAULT_URL: keyVault.outputs.uri
  WEFT_BLOB_ACCOUNT_URL: storage.outputs.blobEndpoint
  WEFT_SEARCH_CACHE_CONTAINER: embeddingCacheContainerName
  WEFT_PAYLOAD_CONTAINER: payloadContainerName
  WEFT_SOURCE_REGISTRY_CONTAINER: sourceRegistryContainerName
  WEFT_BREAKER_CONTAINER: breakerContainerName
  // The deployed package is mounted read-only; /tmp is the writable, per-instance scratch disk.
  WEFT_STATE_DIR: '/tmp/weft'
  WEFT_SANDBOX_BACKEND: enableSessionPool ? 'dynamic_sessions' : 'local'
  WEFT_TABLE_ACCOUNT_URL: storage.outputs.tableEndpoint
  WEFT_QUOTA_TABLE: quotaTableName
  WEFT_RUNS_TABLE: runsTableName
  WEFT_QUOTA_REQUESTS_PER_MINUTE: string(quotaRequestsPerMinute)
  WEFT_QUOTA_MAX_CONCURRENT_RUNS: string(quotaMaxConcurrentRuns)
  WEFT_AUDIT_CONTAINER: auditContainerName
  WEFT_AUDIT_RETENTION_DAYS: string(auditRetentionDays)
}

// Caller identity. With an app registration, App Service Authentication validates every token in front of the app
// and the app trusts the principal headers it passes (easy_auth); the tenant, audience and issuer are the same ones
// the platform checks, for the app's own checks and for direct bearer validation when the mode names it.
var authSettings = empty(authClientId) ? {
  WEFT_AUTH_MODE: 'none'
} : {
  WEFT_AUTH_MODE: 'easy_auth'
  WEFT_AUTH_TENANT_ID: effectiveAuthTenantId
  WEFT_AUTH_AUDIENCE: '${authClientId},api://${authClientId}'
  WEFT_AUTH_ISSUER: '${environment().authentication.loginEndpoint}${effectiveAuthTenantId}/v2.0'
}

var sessionPoolSettings = {
  WEFT_SESSION_POOL_ENDPOINT: sessionPool.outputs.poolManagementEndpoint
}

// host.json keeps the Azure Storage provider; these AzureFunctionsJobHost__ overrides switch the same host.json to the
// scheduler ("azureManaged") when it is enabled, so one code package serves both backends.
var durableTaskSchedulerSettings = {
  DURABLE_TASK_SCHEDULER_CONNECTION_STRING: 'Endpoint=${durableTaskScheduler.outputs.endpoint};Authentication=ManagedIdentity;ClientID=${identity.outputs.clientId}'
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__type: 'azureManaged'
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName: 'DURABLE_TASK_SCHEDULER_CONNECTION_STRING'
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    keyVaultSecretSettings: keyVaultSecretSettings
    authClientId: authClientId
    authTenantId: effectiveAuthTenantId
    appSettings: union(additionalAppSettings, baseAppSettings, authSettings, enableSessionPool ? sessionPoolSettings : {}, enableDurableTaskScheduler ? durableTaskSchedulerSettings : {})
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    namePrefix: '${abbrs.insightsScheduledQueryRules}${resourceToken}'
    actionGroupName: '${abbrs.insightsActionGroups}${resourceToken}'
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    alertEmail: alertEmail
    alertWebhookUrl: alertWebhookUrl
    dailyTokenLimit: alertDailyTokenLimit
    approvalWaitMinutes: alertApprovalWaitMinutes
    enableReadinessTest: enableReadinessTest
    readinessUrl: 'https://${functionApp.outputs.defaultHostName}/api/ready'
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

module budget 'modules/budget.bicep' = if (budgetAmount > 0) {
  name: 'budget'
  scope: rg
  params: {
    name: '${abbrs.consumptionBudgets}${environmentName}'
    amount: budgetAmount
    actualWarningPercent: budgetWarningPercent
    contactEmails: empty(alertEmail) ? [] : [
      alertEmail
    ]
    actionGroupId: alerts.outputs.actionGroupId
  }
}

// Names and endpoints only: azd writes these to .azure/<env>/.env. No keys, connection strings or secrets.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
output AZURE_USER_ASSIGNED_IDENTITY_NAME string = identity.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output AZURE_STORAGE_TABLE_ENDPOINT string = storage.outputs.tableEndpoint
output AZURE_AUTH_CLIENT_ID string = authClientId
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_ENDPOINT string = keyVault.outputs.uri
output AZURE_OPENAI_NAME string = openAi.outputs.name
output AZURE_OPENAI_ENDPOINT string = openAi.outputs.endpoint
output AZURE_OPENAI_PLANNER_DEPLOYMENT string = openAi.outputs.plannerDeploymentName
output AZURE_OPENAI_WORKER_DEPLOYMENT string = openAi.outputs.workerDeploymentName
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output LOG_ANALYTICS_WORKSPACE_NAME string = monitoring.outputs.logAnalyticsName
output TASKHUB_NAME string = taskHubName
output DURABLE_TASK_SCHEDULER_ENDPOINT string = enableDurableTaskScheduler ? durableTaskScheduler.outputs.endpoint : ''
output DURABLE_TASK_SCHEDULER_DASHBOARD_URL string = enableDurableTaskScheduler ? durableTaskScheduler.outputs.dashboardUrl : ''
output AZURE_SESSION_POOL_ENDPOINT string = enableSessionPool ? sessionPool.outputs.poolManagementEndpoint : ''
