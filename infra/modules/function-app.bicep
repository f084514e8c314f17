// Flex Consumption plan + Python function app running as the user-assigned identity.
// Host storage, deployment storage, Application Insights and Key Vault references all use that identity.

@description('Name of the function app.')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Azure region.')
param location string

@description('Tags applied to the plan and the app (the app adds azd-service-name).')
param tags object

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('Name of the host storage account (AzureWebJobsStorage).')
param storageAccountName string

@description('Blob endpoint of the storage account, ending in a slash.')
param storageBlobEndpoint string

@description('Blob container holding the deployment package.')
param deploymentContainerName string

@description('Name of the Application Insights component.')
param applicationInsightsName string

@description('Name of the Key Vault that third-party secret references point to.')
param keyVaultName string

@description('Application settings the app reads (non-secret values only).')
param appSettings object

@description('Third-party secrets as Key Vault references: app setting name -> secret name in the vault.')
param keyVaultSecretSettings object = {}

@description('Python version of the Flex Consumption runtime.')
@allowed([
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('Memory per instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound of instances the app scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Always-ready instances for the durable trigger group (orchestrator, activity and entity triggers). One keeps orchestrations from waiting on a cold start of the group.')
@minValue(0)
param durableAlwaysReadyInstances int = 1

@description('Concurrent HTTP requests per instance.')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int = 16

@description('Client id of the Entra ID app registration callers get tokens for (docs/operations.md, "Callers and roles"). Empty: App Service Authentication stays off and function keys alone guard the routes.')
param authClientId string = ''

@description('Tenant of that app registration.')
param authTenantId string = tenant().tenantId

@description('Paths App Service Authentication lets through without a token: liveness for the platform and readiness for the availability test. Both answer without touching a caller\'s data.')
param authExcludedPaths array = [
  '/api/health'
  '/api/ready'
]

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  // checkov:skip=CKV_AZURE_225:Zone redundancy on Flex Consumption is limited to some regions and fails the deployment elsewhere; opt in per environment where the region supports it.
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

// Platform settings. AzureWebJobsStorage__accountName is one setting for blob, queue and table in the public cloud
// (the templates list per-service URIs instead; those are only needed for private endpoints or sovereign clouds).
// FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION must not be set on Flex Consumption: functionAppConfig
// carries the runtime.
var platformSettings = [
  {
    name: 'AzureWebJobsStorage__accountName'
    value: storageAccountName
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identityClientId
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: applicationInsights.properties.ConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identityClientId};Authorization=AAD'
  }
]

var customSettings = [for setting in items(appSettings): {
  name: setting.key
  value: setting.value
}]

// Unversioned references: the platform picks up a rotated secret within 24 hours.
var secretReferenceSettings = [for setting in items(keyVaultSecretSettings): {
  name: setting.key
  value: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${setting.value})'
}]

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  // checkov:skip=CKV_AZURE_222:HTTP starters must be reachable by callers; there is no VNet/private endpoint option in this deployment. Function keys, and with authClientId Entra ID tokens (authsettingsV2 below), guard the routes.
  // checkov:skip=CKV_AZURE_17:Client certificates (mTLS) would break ordinary HTTP callers of the starter endpoints; they authenticate with function keys and Entra ID tokens.
  // checkov:skip=CKV_AZURE_212:Flex Consumption has no fixed worker count; instances come from scaleAndConcurrency (always-ready durable group, maximumInstanceCount).
  // checkov:skip=CKV_AZURE_213:Flex Consumption does not support the platform health check (healthCheckPath); liveness and readiness are served at /api/health and /api/ready for external probes.
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        alwaysReady: [
          {
            name: 'durable'
            instanceCount: durableAlwaysReadyInstances
          }
        ]
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // Whole-collection PUT: a setting missing here is removed by the next provision.
      appSettings: concat(platformSettings, customSettings, secretReferenceSettings)
    }
  }
}

// No basic (user name/password) publishing: azd deploys to the blob container with Entra ID.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

// App Service Authentication ("Easy Auth") with the Entra ID provider: the platform validates the bearer token
// (issuer, audience, signature, lifetime) before a request reaches the worker, answers 401 without one, and passes
// the validated principal in X-MS-CLIENT-PRINCIPAL*. The app trusts those headers only because WEFT_AUTH_MODE says
// easy_auth (set in main.bicep from the same client id). API only: no login redirect, no token store, no secret.
resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(authClientId)) {
  parent: site
  name: 'authsettingsV2'
  // checkov:skip=CKV_AZURE_13:The check reads the v1 authsettings shape (properties.enabled); authsettingsV2 turns authentication on with platform.enabled and requireAuthentication, which tests/infra/test_identity_infra.py asserts.
  // checkov:skip=CKV_AZURE_63:HTTP logging is a key of the site's web configuration, not of the authsettingsV2 configuration this resource is.
  // checkov:skip=CKV_AZURE_65:Detailed error messages are a key of the site's web configuration, not of the authsettingsV2 configuration.
  // checkov:skip=CKV_AZURE_66:Failed request tracing is a key of the site's web configuration, not of the authsettingsV2 configuration.
  properties: {
    // checkov:skip=CKV_AZURE_80:The dotnet Framework version is a key of the web configuration; the app is Python on Flex Consumption.
    // checkov:skip=CKV_AZURE_88:Azure Files mounts are a key of the web configuration; Flex Consumption deploys from a blob container.
    // checkov:skip=CKV_AZURE_222:Public network access is a property of the site (skipped there with its reason); this configuration is what guards that endpoint.
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: authExcludedPaths
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${authTenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            authClientId
            'api://${authClientId}'
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
