// A monthly cost budget on the resource group, notifying at parameterised shares of the amount: two on the actual
// cost, one on the forecast. Budgets notify; they never stop or delete anything.

@description('Budget name.')
param name string

@description('Monthly amount, in the billing currency of the subscription.')
@minValue(1)
param amount int

@description('First day of the first budget month (yyyy-MM-01). A monthly budget must start in the current month or later, hence the default.')
param startDate string = utcNow('yyyy-MM-01')

@description('Percent of the amount actually spent that sends the first notification.')
@minValue(1)
@maxValue(1000)
param actualWarningPercent int = 80

@description('Percent of the amount actually spent that sends the second notification.')
@minValue(1)
@maxValue(1000)
param actualLimitPercent int = 100

@description('Percent of the amount the month\'s forecast cost reaches that sends a notification.')
@minValue(1)
@maxValue(1000)
param forecastPercent int = 100

@description('Addresses that get the notifications (the resource group\'s Owners always do).')
param contactEmails array = []

@description('Action group that gets the notifications too; empty for none.')
param actionGroupId string = ''

var contact = {
  contactEmails: contactEmails
  contactRoles: [
    'Owner'
  ]
  contactGroups: empty(actionGroupId) ? [] : [
    actionGroupId
  ]
}

resource budget 'Microsoft.Consumption/budgets@2024-08-01' = {
  name: name
  properties: {
    category: 'Cost'
    amount: amount
    timeGrain: 'Monthly'
    timePeriod: {
      startDate: startDate
    }
    notifications: {
      actualWarning: union(contact, {
        enabled: true
        operator: 'GreaterThanOrEqualTo'
        threshold: actualWarningPercent
        thresholdType: 'Actual'
      })
      actualLimit: union(contact, {
        enabled: true
        operator: 'GreaterThanOrEqualTo'
        threshold: actualLimitPercent
        thresholdType: 'Actual'
      })
      forecast: union(contact, {
        enabled: true
        operator: 'GreaterThanOrEqualTo'
        threshold: forecastPercent
        thresholdType: 'Forecasted'
      })
    }
  }
}

output name string = budget.name
