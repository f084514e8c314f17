// Alert rules on Weft's telemetry (log search alerts over Application Insights), the one action group they notify,
// and the availability test that calls GET /api/ready. Each rule's query is a file under infra/alerts/; each rule
// has a runbook row in docs/operations.md ("Alerts"), and tests/unit/telemetry/test_docs.py checks that every
// telemetry name a query uses is one the code emits.

@description('Prefix of the rule names (alert-<token>).')
param namePrefix string

@description('Name of the action group (created only when an e-mail address or a webhook is given).')
param actionGroupName string

@description('Azure region of the rules and the availability test.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Name of the Application Insights component the rules query.')
param applicationInsightsName string

@description('Address that gets alert e-mails; empty for none.')
param alertEmail string = ''

@description('HTTPS endpoint that gets alerts as webhook calls (common alert schema); empty for none. A token in its query string is a secret, hence secure.')
@secure()
param alertWebhookUrl string = ''

@description('Failed runs, percent of finished runs in 15 minutes (at least 5 runs), above which the failed-run alert fires.')
@minValue(1)
@maxValue(100)
param failedRunPercent int = 10

@description('Failed calls of one tool, percent of its calls in 15 minutes (at least 5 calls).')
@minValue(1)
@maxValue(100)
param toolFailurePercent int = 20

@description('p95 run duration in seconds over an hour, per mode.')
@minValue(1)
param runP95Seconds int = 900

@description('Minutes a run may wait for an approval before the approval alert fires (below WEFT_APPROVAL_TIMEOUT_S, 60 minutes by default).')
@minValue(5)
@maxValue(1440)
param approvalWaitMinutes int = 30

@description('Sandbox runs without a free slot, or stopped at a limit, percent of sandbox runs in 30 minutes.')
@minValue(1)
@maxValue(100)
param sandboxPercent int = 5

@description('LLM calls throttled beyond the in-call retries, percent per deployment in 15 minutes.')
@minValue(1)
@maxValue(100)
param throttledPercent int = 10

@description('Tokens (input + output) in 24 hours above which the token-spend alert fires.')
@minValue(1)
param dailyTokenLimit int = 5000000

@description('Deploy the availability test that calls GET /api/ready (billed per test run).')
param enableReadinessTest bool = true

@description('URL of the readiness endpoint, https://<app>/api/ready.')
param readinessUrl string

@description('Seconds between two availability test runs from one location.')
@allowed([
  300
  600
  900
])
param readinessTestFrequency int = 900

var hasActionGroup = !empty(alertEmail) || !empty(alertWebhookUrl)

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (hasActionGroup) {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'weft'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'email'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
    webhookReceivers: empty(alertWebhookUrl) ? [] : [
      {
        name: 'webhook'
        serviceUri: alertWebhookUrl
        useCommonAlertSchema: true
      }
    ]
  }
}

// name: suffix of the rule; severity 0 (critical) .. 4 (verbose); window and frequency as ISO 8601 durations;
// measure: the query's column compared with threshold (GreaterThan), after aggregation over the window's rows;
// dimension: the column that makes one alert per value (tool, mode, deployment), '' for none.
var alerts = [
  {
    name: 'failed-run-rate'
    displayName: 'Weft: failed runs above ${failedRunPercent}%'
    severity: 1
    window: 'PT15M'
    frequency: 'PT5M'
    query: loadTextContent('../alerts/failed-run-rate.kql')
    measure: 'failed_pct'
    aggregation: 'Maximum'
    threshold: failedRunPercent
    dimension: 'mode'
  }
  {
    name: 'tool-failure-rate'
    displayName: 'Weft: a tool fails more than ${toolFailurePercent}% of its calls'
    severity: 2
    window: 'PT15M'
    frequency: 'PT5M'
    query: loadTextContent('../alerts/tool-failure-rate.kql')
    measure: 'failure_pct'
    aggregation: 'Maximum'
    threshold: toolFailurePercent
    dimension: 'tool'
  }
  {
    name: 'open-circuits'
    displayName: 'Weft: a tool\'s circuit opened'
    severity: 2
    window: 'PT15M'
    frequency: 'PT5M'
    query: loadTextContent('../alerts/open-circuits.kql')
    measure: 'opened'
    aggregation: 'Total'
    threshold: 0
    dimension: 'tool'
  }
  {
    name: 'run-latency-p95'
    displayName: 'Weft: p95 run duration above ${runP95Seconds} s'
    severity: 3
    window: 'PT1H'
    frequency: 'PT15M'
    query: loadTextContent('../alerts/run-latency-p95.kql')
    measure: 'p95_s'
    aggregation: 'Maximum'
    threshold: runP95Seconds
    dimension: 'mode'
  }
  {
    name: 'approval-waiting'
    displayName: 'Weft: runs waiting for approval over ${approvalWaitMinutes} min'
    severity: 3
    window: 'PT2H'
    frequency: 'PT15M'
    query: replace(loadTextContent('../alerts/approval-waiting.kql'), '{approvalWaitMinutes}', string(approvalWaitMinutes))
    measure: 'waiting'
    aggregation: 'Maximum'
    threshold: 0
    dimension: ''
  }
  {
    name: 'sandbox-capacity'
    displayName: 'Weft: sandbox busy or limited in over ${sandboxPercent}% of runs'
    severity: 2
    window: 'PT30M'
    frequency: 'PT15M'
    query: loadTextContent('../alerts/sandbox-capacity.kql')
    measure: 'rate_pct'
    aggregation: 'Maximum'
    threshold: sandboxPercent
    dimension: 'kind'
  }
  {
    name: 'llm-throttling'
    displayName: 'Weft: model throttling above ${throttledPercent}% of calls'
    severity: 2
    window: 'PT15M'
    frequency: 'PT5M'
    query: loadTextContent('../alerts/llm-throttling.kql')
    measure: 'throttled_pct'
    aggregation: 'Maximum'
    threshold: throttledPercent
    dimension: 'deployment'
  }
  {
    name: 'token-spend-daily'
    displayName: 'Weft: more than ${dailyTokenLimit} tokens in 24 hours'
    severity: 3
    window: 'P1D'
    frequency: 'PT1H'
    query: loadTextContent('../alerts/token-spend-daily.kql')
    measure: 'tokens'
    aggregation: 'Total'
    threshold: dailyTokenLimit
    dimension: ''
  }
  {
    name: 'poison-queue'
    displayName: 'Weft: run requests on the runs-poison queue'
    severity: 1
    window: 'PT15M'
    frequency: 'PT5M'
    query: loadTextContent('../alerts/poison-queue.kql')
    measure: 'poisoned'
    aggregation: 'Total'
    threshold: 0
    dimension: ''
  }
  {
    name: 'readiness-failures'
    displayName: 'Weft: readiness checks failing'
    severity: 1
    window: 'PT15M'
    frequency: 'PT5M'
    query: loadTextContent('../alerts/readiness-failures.kql')
    measure: 'failures'
    aggregation: 'Total'
    threshold: 0
    dimension: ''
  }
]

resource rules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for alert in alerts: {
  name: '${namePrefix}-${alert.name}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: alert.displayName
    description: 'Runbook: docs/operations.md, Alerts, ${alert.name}.'
    severity: alert.severity
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: alert.frequency
    windowSize: alert.window
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: alert.query
          timeAggregation: alert.aggregation
          metricMeasureColumn: alert.measure
          operator: 'GreaterThan'
          threshold: alert.threshold
          dimensions: empty(alert.dimension) ? [] : [
            {
              name: alert.dimension
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: hasActionGroup ? [
        actionGroup.id
      ] : []
    }
  }
}]

// Standard availability test: GET /api/ready from three regions; its results land in availabilityResults, which
// the readiness-failures rule reads. The hidden-link tag ties it to the component in the portal.
resource readinessTest 'Microsoft.Insights/webtests@2022-06-15' = if (enableReadinessTest) {
  name: '${namePrefix}-ready'
  location: location
  tags: union(tags, {
    'hidden-link:${applicationInsights.id}': 'Resource'
  })
  kind: 'standard'
  properties: {
    SyntheticMonitorId: '${namePrefix}-ready'
    Name: 'weft-ready'
    Description: 'GET /api/ready answers 200 (every dependency reachable).'
    Enabled: true
    Kind: 'standard'
    Frequency: readinessTestFrequency
    Timeout: 30
    RetryEnabled: true
    Locations: [
      {
        Id: 'us-va-ash-azr'
      }
      {
        Id: 'emea-nl-ams-azr'
      }
      {
        Id: 'apac-sg-sin-azr'
      }
    ]
    Request: {
      RequestUrl: readinessUrl
      HttpVerb: 'GET'
      ParseDependentRequests: false
    }
    ValidationRules: {
      ExpectedHttpStatusCode: 200
      SSLCheck: true
      SSLCertRemainingLifetimeCheck: 7
    }
  }
}

output actionGroupId string = hasActionGroup ? actionGroup.id : ''
