// Durable Task Scheduler backend (optional): scheduler + task hub, the app identity as Durable Task Data
// Contributor on the task hub, and the deployer on the same task hub for the DTS dashboard.

@description('Name of the scheduler.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the scheduler.')
param tags object

@description('Task hub name; the app reads it from TASKHUB_NAME (host.json hubName "%TASKHUB_NAME%").')
param taskHubName string

@description('Principal id of the app identity.')
param identityPrincipalId string

@description('Object id of the deploying user (dashboard access); empty to skip.')
param deployerPrincipalId string = ''

@description('Scheduler SKU.')
@allowed([
  'Consumption'
  'Dedicated'
])
param skuName string = 'Consumption'

@description('IP ranges allowed to reach the scheduler. An empty list denies all traffic; Flex Consumption outbound addresses are not fixed without VNet integration.')
param ipAllowlist array = [
  '0.0.0.0/0'
]

var durableTaskDataContributorRoleId = '0ad04412-c4d5-4796-b79c-f76d14c8d402'

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    ipAllowlist: ipAllowlist
    sku: {
      name: skuName
    }
  }
}

resource taskHub 'Microsoft.DurableTask/schedulers/taskHubs@2025-11-01' = {
  parent: scheduler
  name: taskHubName
}

resource appDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(taskHub.id, identityPrincipalId, durableTaskDataContributorRoleId)
  scope: taskHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', durableTaskDataContributorRoleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource deployerDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(taskHub.id, deployerPrincipalId, durableTaskDataContributorRoleId)
  scope: taskHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', durableTaskDataContributorRoleId)
    principalId: deployerPrincipalId
  }
}

output name string = scheduler.name
output endpoint string = scheduler.properties.endpoint
output taskHubName string = taskHub.name
output dashboardUrl string = taskHub.properties.dashboardUrl
