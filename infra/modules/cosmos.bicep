// Cosmos DB: the event store's account, the `cloudscale` database, the `events` container and
// the `leases` container of the change-feed trigger. The app's identity may read and write
// items but not create containers, so both must exist before the app runs.
//
// The events container's partition key, time to live and indexing policy are
// infra/cosmos/events-container.json: the container definition of
// shared/adapters/event_store/cosmos_container.py as Cosmos DB names its properties, which a test keeps
// equal to the code's.

param location string
param tags object
param name string

@description('Database of the event store: the app\'s CLOUDSCALE_COSMOS_DATABASE default.')
param databaseName string = 'cloudscale'

@description('Container of stored events: the app\'s CLOUDSCALE_COSMOS_CONTAINER default.')
param eventsContainerName string = 'events'

// Serverless bills each request and nothing while idle: right for development and for traffic
// that comes in bursts. Autoscale provisions throughput that follows load between 10% and 100%
// of a maximum: cheaper per request once traffic is steady (docs/cost.md), and it has no
// serverless cap on throughput per container.
@description('serverless or autoscale.')
@allowed([
  'serverless'
  'autoscale'
])
param throughputMode string = 'serverless'

@description('Autoscale only: the events container\'s highest throughput (RU/s).')
@minValue(1000)
param autoscaleMaxThroughput int = 4000

// The trigger's lease documents: one per feed range, a few writes a second at most.
var leasesContainerName = 'leases'
var serverless = throughputMode == 'serverless'
var eventsContainer = loadJsonContent('../cosmos/events-container.json')

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' = {
  name: name
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    // Session: a client reads its own writes, which is all the pipeline needs.
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    capabilities: serverless ? [
      {
        name: 'EnableServerless'
      }
    ] : []
    // No account keys: data access only with Entra identities and data-plane roles.
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-05-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
  }
}

resource events 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-05-15' = {
  parent: database
  name: eventsContainerName
  properties: {
    resource: union({ id: eventsContainerName }, eventsContainer)
    options: serverless ? {} : {
      autoscaleSettings: {
        maxThroughput: autoscaleMaxThroughput
      }
    }
  }
}

resource leases 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-05-15' = {
  parent: database
  name: leasesContainerName
  properties: {
    resource: {
      id: leasesContainerName
      // The partition key the Functions Cosmos DB trigger requires of its lease container.
      partitionKey: {
        paths: [
          '/id'
        ]
        kind: 'Hash'
        version: 2
      }
    }
    options: serverless ? {} : {
      autoscaleSettings: {
        maxThroughput: 1000
      }
    }
  }
}

output accountName string = account.name
output endpoint string = account.properties.documentEndpoint
output databaseName string = database.name
output eventsContainerName string = events.name
output leasesContainerName string = leases.name
