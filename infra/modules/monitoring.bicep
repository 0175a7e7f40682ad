// Monitoring: a Log Analytics workspace and the workspace-based Application Insights component
// the app's OpenTelemetry traces, metrics (customMetrics) and logs go to.

param location string
param tags object
param workspaceName string
param appInsightsName string

@description('Days the workspace keeps logs and telemetry.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    IngestionMode: 'LogAnalytics'
    // Local authentication stays on: the app configures the Azure Monitor distro with the
    // connection string alone (shared/telemetry.py passes no credential), and with local
    // authentication off the service would refuse everything the app sends. The connection
    // string names the component; it grants no read access to anything.
    DisableLocalAuth: false
  }
}

output appInsightsName string = appInsights.name
output appInsightsId string = appInsights.id
output workspaceId string = workspace.id
