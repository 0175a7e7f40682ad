// Data Explorer: the cluster (streaming ingestion and purge on), the analytics database, and the schema
// from changefeed/kusto/events.kql (table, JSON mapping, policies, the EventsDedup view)
// applied as a database script. The script runs when it is created and again whenever the
// file changes (no forceUpdateTag), and every command in it is safe to repeat.

param location string
param tags object
param name string

@description('Cluster SKU; the Dev(No SLA) SKUs are single-node and without an SLA.')
param skuName string = 'Dev(No SLA)_Standard_E2a_v4'

@description('Instance count: 1 for a Dev(No SLA) SKU, 2 or more for an SLA.')
@minValue(1)
param capacity int = 1

@description('Analytics database: the app\'s CLOUDSCALE_KUSTO_DATABASE default.')
param databaseName string = 'cloudscale'

var devSku = startsWith(skuName, 'Dev(')

resource cluster 'Microsoft.Kusto/clusters@2024-04-13' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: devSku ? 'Basic' : 'Standard'
    capacity: capacity
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    // The change-feed stage streams each batch (queryable in seconds); the table's own
    // streaming ingestion policy is in the schema script.
    enableStreamingIngest: true
    // A development cluster stops itself after days without queries or ingestion; a
    // production one must never be found stopped when traffic returns.
    enableAutoStop: devSku
    // Data-subject erasure runs `.purge`, which Data Explorer refuses unless purge is enabled on
    // the cluster ("Enable data purge on your Azure Data Explorer cluster",
    // https://learn.microsoft.com/azure/data-explorer/data-purge-portal; the portal's switch is
    // this property). Turning it on for an existing cluster restarts the service, which may drop
    // running queries. A purge takes the purged records out of query results when it completes
    // (seconds to hours; purges run one at a time per cluster) and deletes the storage holding
    // them 5 to 30 days after the command
    // (https://learn.microsoft.com/azure/data-explorer/kusto/concepts/data-purge).
    enablePurge: true
    publicNetworkAccess: 'Enabled'
  }
}

resource database 'Microsoft.Kusto/clusters/databases@2024-04-13' = {
  parent: cluster
  name: databaseName
  location: location
  kind: 'ReadWrite'
  properties: {
    // 30 days, the event store's TTL: what the script's comment asks of the database, so the
    // EventsDedup view, which has no policy of its own, keeps rows as long as the raw table.
    softDeletePeriod: 'P30D'
    // Recent data on local SSD: the reports look at the last hour, reconciliation at the last
    // three; older rows are still queryable, from cold storage.
    hotCachePeriod: 'P7D'
  }
}

resource schema 'Microsoft.Kusto/clusters/databases/scripts@2024-04-13' = {
  parent: database
  name: 'events-schema'
  properties: {
    scriptContent: loadTextContent('../../changefeed/kusto/events.kql')
    continueOnErrors: false
  }
}

output clusterName string = cluster.name
output clusterUri string = cluster.properties.uri
output ingestUri string = cluster.properties.dataIngestionUri
output databaseName string = database.name
