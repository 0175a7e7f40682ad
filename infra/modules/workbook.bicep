// The CloudScale workbook in Azure Monitor, in two tabs. "Service levels": availability, ingest
// and processing latency, error budget burn, queue and dead-letter depth, fraud rate and
// rate-limit rejections. "Live events": the local dashboard's questions for this deployment: the
// newest events in Data Explorer, rejected events by reason, 429s by limit, fraud by rule and
// analytics lag. Its content is infra/workbooks/cloudscale.json (edit it in the portal's Advanced
// Editor and paste it back); the file names what it reads as __APP_INSIGHTS_ID__,
// __SERVICE_BUS_NAMESPACE_ID__, __KUSTO_CLUSTER_URI__ and __KUSTO_DATABASE__, filled in here.
//
// A workbook's Data Explorer queries run as the person viewing it, not as the app: a viewer
// needs the Viewer role on the analytics database (docs/deploy.md, "Where to look").

param location string
param tags object
param displayName string
param appInsightsId string
param serviceBusNamespaceId string

@description('Data Explorer cluster URI (the cluster\'s `uri` property): the Live events tab queries it.')
param kustoClusterUri string

@description('The analytics database on that cluster.')
param kustoDatabaseName string

var content = loadTextContent('../workbooks/cloudscale.json')
var withMonitoring = replace(replace(content, '__APP_INSIGHTS_ID__', appInsightsId), '__SERVICE_BUS_NAMESPACE_ID__', serviceBusNamespaceId)

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
    serializedData: replace(replace(withMonitoring, '__KUSTO_CLUSTER_URI__', kustoClusterUri), '__KUSTO_DATABASE__', kustoDatabaseName)
  }
}

output workbookId string = workbook.id
