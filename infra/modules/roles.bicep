// Data-plane access of the Function App's identity, each role on the narrowest scope the app
// works with:
//
// - events queue: Azure Service Bus Data Owner, on this queue only. Ingest sends and the process
//   trigger receives, completes and abandons (Sender and Receiver would do for that), but the
//   scale controller counts the queue's messages with the trigger's identity, and that read
//   needs Manage rights: with Receiver alone the app falls back to incremental scaling (one
//   instance at a time). Data Owner is the only built-in role with Manage; scoped to the
//   queue, it manages nothing else. See docs/tradeoffs.md, "Roles, narrowest scope".
// - events-poison queue: Data Sender, for the process stage to park messages there, and Data
//   Receiver for data-subject erasure alone: the `privacy_erasures` timer receives the parked
//   messages and completes (deletes) an erased subject's, abandoning the others (docs/privacy.md).
//   Replaying stays a person's job (`cloudscale dlq`, run with their own login), granted to
//   `deadLetterOperatorPrincipalId` when one is given. The events queue's dead-letter queue is
//   covered by Data Owner there.
// - storage account: Storage Blob Data Owner for host storage (the host creates its own
//   containers, so the account, not a container) and Storage Table Data Contributor for the
//   rate-limit and tenants tables, which the app also creates if missing (an account-level operation) and
//   which the host uses for its diagnostic events. No Storage Queue Data Contributor: the host
//   needs queues only for blob triggers, and this app has none (its timer locks are blobs).
// - Cosmos DB: the built-in Data Contributor on the `cloudscale` database only (events and
//   leases containers), not the account.
// - Data Explorer: Ingestor and Viewer on the analytics database; Viewer for reconciliation's
//   queries and the health check's `.show version`. And Admin on that database, for data-subject
//   erasure alone: `.purge` requires the database Admin role ("The command requires database
//   admin permissions on the relevant databases",
//   https://learn.microsoft.com/azure/data-explorer/kusto/concepts/data-purge); no narrower
//   role can purge. It is the database's Admin, not the cluster's AllDatabasesAdmin. Ingestor
//   and Viewer stay, so the app keeps working if an operator removes Admin (and erasure then
//   fails with a message naming this role).
//
// No Monitoring Metrics Publisher: the app sends telemetry with the connection string, not
// with Entra authentication (see monitoring.bicep).

param principalId string
param storageAccountName string
param serviceBusNamespaceName string
param eventsQueueName string
param poisonQueueName string
param cosmosAccountName string
param cosmosDatabaseName string
param kustoClusterName string
param kustoDatabaseName string

@description('Object id of a user or group that inspects and replays dead letters; empty: nobody.')
param deadLetterOperatorPrincipalId string = ''

// Built-in role definitions: the same ids in every tenant.
var serviceBusDataOwner = '090c5cfd-751d-490a-894a-3ce6f1109419'
var serviceBusDataSender = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
var serviceBusDataReceiver = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
// Cosmos DB's own data-plane role, defined in every account.
var cosmosDataContributor = '00000000-0000-0000-0000-000000000002'

var hasOperator = !empty(deadLetterOperatorPrincipalId)

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

resource eventsQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' existing = {
  parent: namespace
  name: eventsQueueName
}

resource poisonQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' existing = {
  parent: namespace
  name: poisonQueueName
}

resource cosmosAccount 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' existing = {
  name: cosmosAccountName
}

resource kustoCluster 'Microsoft.Kusto/clusters@2024-04-13' existing = {
  name: kustoClusterName
}

resource kustoDatabase 'Microsoft.Kusto/clusters/databases@2024-04-13' existing = {
  parent: kustoCluster
  name: kustoDatabaseName
}

// Send, receive and Manage on the events queue: Manage lets the scale controller read the
// queue's length for target-based scaling.
resource eventsOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventsQueue.id, principalId, serviceBusDataOwner)
  scope: eventsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource poisonSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(poisonQueue.id, principalId, serviceBusDataSender)
  scope: poisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Receive on the poison queue: an erasure removes the erased subject's parked messages.
resource poisonReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(poisonQueue.id, principalId, serviceBusDataReceiver)
  scope: poisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiver)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource hostStorageOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storageAccount.id, principalId, storageBlobDataOwner)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storageAccount.id, principalId, storageTableDataContributor)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource cosmosContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-05-15' = {
  parent: cosmosAccount
  name: guid(cosmosAccount.id, principalId, cosmosDataContributor)
  properties: {
    roleDefinitionId: '${cosmosAccount.id}/sqlRoleDefinitions/${cosmosDataContributor}'
    principalId: principalId
    scope: '${cosmosAccount.id}/dbs/${cosmosDatabaseName}'
  }
}

// Data Explorer applies principal changes on one database one at a time: the second waits.
resource kustoIngestor 'Microsoft.Kusto/clusters/databases/principalAssignments@2024-04-13' = {
  parent: kustoDatabase
  name: guid(kustoDatabase.id, principalId, 'Ingestor')
  properties: {
    principalId: principalId
    principalType: 'App'
    role: 'Ingestor'
    tenantId: subscription().tenantId
  }
}

resource kustoViewer 'Microsoft.Kusto/clusters/databases/principalAssignments@2024-04-13' = {
  parent: kustoDatabase
  name: guid(kustoDatabase.id, principalId, 'Viewer')
  dependsOn: [
    kustoIngestor
  ]
  properties: {
    principalId: principalId
    principalType: 'App'
    role: 'Viewer'
    tenantId: subscription().tenantId
  }
}

// Purges of a data subject's rows (shared/adapters/analytics/kusto_eraser.py); the cluster must
// also have `enablePurge` (kusto.bicep).
resource kustoAdmin 'Microsoft.Kusto/clusters/databases/principalAssignments@2024-04-13' = {
  parent: kustoDatabase
  name: guid(kustoDatabase.id, principalId, 'Admin')
  dependsOn: [
    kustoViewer
  ]
  properties: {
    principalId: principalId
    principalType: 'App'
    role: 'Admin'
    tenantId: subscription().tenantId
  }
}

// The dead-letter operator: reads the events queue's dead-letter queue and the poison queue,
// and replays into the events queue.
resource operatorEventsReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasOperator) {
  name: guid(eventsQueue.id, deadLetterOperatorPrincipalId, serviceBusDataReceiver)
  scope: eventsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiver)
    principalId: deadLetterOperatorPrincipalId
  }
}

resource operatorEventsSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasOperator) {
  name: guid(eventsQueue.id, deadLetterOperatorPrincipalId, serviceBusDataSender)
  scope: eventsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
    principalId: deadLetterOperatorPrincipalId
  }
}

resource operatorPoisonReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasOperator) {
  name: guid(poisonQueue.id, deadLetterOperatorPrincipalId, serviceBusDataReceiver)
  scope: poisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiver)
    principalId: deadLetterOperatorPrincipalId
  }
}
