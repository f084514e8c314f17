// Azure OpenAI account (keyless: disableLocalAuth) with the planner and worker model deployments.

@description('Name of the Azure OpenAI account; also its custom subdomain (required for Entra ID auth).')
param name string

@description('Azure region of the account (model availability differs per region).')
param location string

@description('Tags applied to the account.')
param tags object

@description('Principal id of the app identity (gets Cognitive Services OpenAI User).')
param identityPrincipalId string

@description('Planner deployment: name the app calls, model name, model version, SKU and capacity (thousands of tokens per minute).')
param planner object

@description('Worker deployment: same shape as planner.')
param worker object

var cognitiveServicesOpenAIUserRoleId = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  // checkov:skip=CKV_AZURE_134:No VNet integration in this deployment: the Flex app calls the public endpoint; access is Entra ID only (disableLocalAuth).
  // checkov:skip=CKV_AZURE_238:The account calls no other resource (no customer-managed key, no data sources), so an identity on it would hold no role.
  sku: {
    name: 'S0'
  }
  properties: {
    customSubDomainName: name
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
    }
  }
}

resource plannerDeployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: planner.deploymentName
  sku: {
    name: planner.skuName
    capacity: planner.capacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: planner.modelName
      version: planner.modelVersion
    }
    versionUpgradeOption: 'OnceCurrentVersionExpired'
  }
}

// Deployments on one account must be created one after the other; parallel creation fails with a conflict.
resource workerDeployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: worker.deploymentName
  dependsOn: [
    plannerDeployment
  ]
  sku: {
    name: worker.skuName
    capacity: worker.capacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: worker.modelName
      version: worker.modelVersion
    }
    versionUpgradeOption: 'OnceCurrentVersionExpired'
  }
}

resource openAIUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, identityPrincipalId, cognitiveServicesOpenAIUserRoleId)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', cognitiveServicesOpenAIUserRoleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = account.name
output endpoint string = account.properties.endpoint
output plannerDeploymentName string = plannerDeployment.name
output workerDeploymentName string = workerDeployment.name
