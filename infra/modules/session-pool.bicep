// Azure Container Apps dynamic sessions pool (optional): the built-in Python code interpreter (PythonLTS) that runs
// model-written code in Hyper-V isolated sessions with outbound network access disabled.

@description('Name of the session pool.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the pool.')
param tags object

@description('Principal id of the app identity (gets Azure ContainerApps Session Executor).')
param identityPrincipalId string

@description('Upper bound of concurrently allocated sessions.')
@minValue(1)
param maxConcurrentSessions int = 20

@description('Seconds an idle session lives before it is destroyed (its files in /mnt/data go with it).')
@minValue(300)
@maxValue(3600)
param cooldownPeriodInSeconds int = 300

var sessionExecutorRoleId = '0fb8eba5-a2bb-4abe-b1c1-49dfad359bb0'

resource pool 'Microsoft.App/sessionPools@2025-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    poolManagementType: 'Dynamic'
    containerType: 'PythonLTS'
    scaleConfiguration: {
      maxConcurrentSessions: maxConcurrentSessions
    }
    dynamicPoolConfiguration: {
      executionType: 'Timed'
      cooldownPeriodInSeconds: cooldownPeriodInSeconds
    }
    sessionNetworkConfiguration: {
      status: 'EgressDisabled'
    }
  }
}

resource sessionExecutor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(pool.id, identityPrincipalId, sessionExecutorRoleId)
  scope: pool
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', sessionExecutorRoleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = pool.name
output poolManagementEndpoint string = pool.properties.poolManagementEndpoint
