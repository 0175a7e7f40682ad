// The SLO workbook in Azure Monitor: availability, ingest and processing latency, error budget
// burn, queue and dead-letter depth, fraud rate and rate-limit rejections. Its content is
// infra/workbooks/slo.json (edit it in the portal's Advanced Editor and paste it back); the
// file names the resources it reads as __APP_INSIGHTS_ID__ and __SERVICE_BUS_NAMESPACE_ID__,
// filled in here.

param location string
param tags object
param displayName string
param appInsightsId string
param serviceBusNamespaceId string

var content = loadTextContent('../workbooks/slo.json')

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name must be a GUID; this one is stable per App Insights component, so a
  // redeployment updates the workbook instead of adding a copy.
  name: guid(appInsightsId, 'cloudscale-slo-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: appInsightsId
    version: 'Notebook/1.0'
    serializedData: replace(replace(content, '__APP_INSIGHTS_ID__', appInsightsId), '__SERVICE_BUS_NAMESPACE_ID__', serviceBusNamespaceId)
  }
}

output workbookId string = workbook.id
