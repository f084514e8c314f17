// The Weft workbook (Azure Monitor Workbooks): a run-centric view over the Application Insights component, with a
// drill-down from a run id to its spans. Its definition is infra/workbooks/weft.workbook.json, validated against
// the workbook schema by tests/infra and checked name by name against the code by tests/unit/telemetry/test_docs.py.

@description('Display name in the portal (Workbooks gallery of the component).')
param displayName string = 'Weft runs'

@description('Azure region.')
param location string

@description('Tags applied to the workbook.')
param tags object

@description('Name of the Application Insights component the workbook queries.')
param applicationInsightsName string

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// A workbook's resource name must be a GUID; this one is stable per component, so a provision updates it in place.
resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(applicationInsights.id, 'weft-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    version: 'Notebook/1.0'
    sourceId: applicationInsights.id
    serializedData: loadTextContent('../workbooks/weft.workbook.json')
  }
}

output id string = workbook.id
