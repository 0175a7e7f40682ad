// The Function App on the Flex Consumption plan: Python 3.13, a system-assigned identity, the
// app package read from a blob container with that identity, and app settings that name
// endpoints only. Every connection is identity-based: no setting holds a key or connection
// string (the App Insights connection string identifies the component and grants no access).
//
// On Flex the language and its version are functionAppConfig.runtime, and scale is
// functionAppConfig.scaleAndConcurrency: the app settings and site properties other plans use
// for them (FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE,
// WEBSITE_CONTENTSHARE, linuxFxVersion, alwaysOn, ...) are not supported and appear nowhere.

param location string
param tags object
param planName string
param name string
param appInsightsName string
param storageAccountName string
param deploymentContainerUrl string
param tableEndpoint string
param rateLimitTableName string
param tenantsTableName string
param privacyTableName string
param serviceBusNamespace string
param eventsQueueName string
param poisonQueueName string
param queueLockSeconds int
param queueMaxDeliveryCount int
param cosmosEndpoint string
param cosmosDatabaseName string
param cosmosContainerName string
param kustoClusterUri string
param kustoIngestUri string
param kustoDatabaseName string
param trustedProxies string
// siteConfig.cors: on Flex the host's CORS middleware always runs with these origins (main.bicep).
param corsAllowedOrigins array
param maximumInstanceCount int
param instanceMemoryMB int
param httpPerInstanceConcurrency int
param alwaysReadyHttpInstances int

// The HMAC key the app hashes client addresses under (it keeps those hashes, never the
// addresses). Every instance reads this one value; a new one per deployment, which only
// restarts the per-client buckets and velocity windows.
@secure()
param clientKeySecret string = newGuid()

// The HMAC key of data-subject hashes (docs/privacy.md). Unlike the client-key secret it must
// never change, so it is not generated per deployment: empty leaves it to the app, which keeps
// one it generated in the privacy table; pass a Key Vault reference to keep it apart.
@secure()
param subjectKeySecret string = ''

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    // Linux: the only operating system of the Flex Consumption plan.
    reserved: true
  }
}

// Every setting the app reads (shared.settings.SETTING_NAMES), except the three that would hold
// a connection string: ServiceBusConnection, CosmosDBConnection and AzureWebJobsStorage.
var appSettings = {
  // Host storage (locks, timer state, keys) through the identity; the rate limiter reads the
  // Table endpoint from the same connection prefix.
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__tableServiceUri: tableEndpoint
  ServiceBusConnection__fullyQualifiedNamespace: serviceBusNamespace
  CosmosDBConnection__accountEndpoint: cosmosEndpoint
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  // host.json has telemetryMode OpenTelemetry: the worker hands each invocation's trace context
  // to OpenTelemetry and the host leaves the app's logs to the app's own exporter.
  PYTHON_ENABLE_OPENTELEMETRY: 'true'
  CLOUDSCALE_BACKEND: 'azure'
  // Only the embedded backend keeps files; /tmp is the one writable place if anything looks.
  CLOUDSCALE_DATA_DIR: '/tmp/cloudscale'
  // Only the embedded change feed has ranges of its own; Cosmos DB's are its physical partitions.
  CLOUDSCALE_FEED_RANGES: '4'
  CLOUDSCALE_RATE_LIMIT_IP_CAPACITY: '100'
  CLOUDSCALE_RATE_LIMIT_IP_REFILL_PER_SECOND: '10'
  CLOUDSCALE_RATE_LIMIT_GLOBAL_PER_MINUTE: '10000'
  CLOUDSCALE_RATE_LIMIT_GLOBAL_SYNC_SECONDS: '1'
  CLOUDSCALE_RATE_LIMIT_IPV6_PREFIX: '64'
  CLOUDSCALE_CLIENT_KEY_SECRET: clientKeySecret
  CLOUDSCALE_TRUSTED_PROXIES: trustedProxies
  CLOUDSCALE_RATE_LIMIT_TABLE: rateLimitTableName
  CLOUDSCALE_RATE_LIMIT_TABLE_ENDPOINT: tableEndpoint
  // The tenant registry, in the rate-limit table's account. Producers send write keys; the
  // Azure backend refuses anything but required. A revoked key or a suspended tenant is
  // refused within the cache seconds.
  CLOUDSCALE_TENANTS_TABLE: tenantsTableName
  CLOUDSCALE_WRITE_KEYS: 'required'
  CLOUDSCALE_WRITE_KEY_CACHE_SECONDS: '10'
  CLOUDSCALE_TENANT_EVENTS_PER_MINUTE: '60000'
  // Data-subject erasures (docs/privacy.md): tombstones and records in the registry's account;
  // an erasure waits the cache seconds before deleting, and the timer finishes what a crash left.
  CLOUDSCALE_PRIVACY_TABLE: privacyTableName
  CLOUDSCALE_SUBJECT_KEY_SECRET: subjectKeySecret
  CLOUDSCALE_SUPPRESSION_CACHE_SECONDS: '10'
  CLOUDSCALE_ERASURE_LEASE_SECONDS: '60'
  CLOUDSCALE_ERASURE_SCHEDULE: '0 */1 * * * *'
  // Read only by the embedded analytics store; Data Explorer's own retention is set in kusto.bicep.
  CLOUDSCALE_ANALYTICS_RETENTION_DAYS: '30'
  // Embedded only: on Azure ingest keeps no live events (Application Insights and Data Explorer show them).
  CLOUDSCALE_LIVE_EVENTS_KEPT: '0'
  // The triggers' bindings read the queue, database and container names from these settings.
  CLOUDSCALE_EVENTS_QUEUE: eventsQueueName
  CLOUDSCALE_POISON_QUEUE: poisonQueueName
  // Read only by the embedded queue; set to the Service Bus queue's values so the two agree.
  CLOUDSCALE_QUEUE_LOCK_SECONDS: string(queueLockSeconds)
  CLOUDSCALE_QUEUE_MAX_DELIVERY_COUNT: string(queueMaxDeliveryCount)
  CLOUDSCALE_COSMOS_DATABASE: cosmosDatabaseName
  CLOUDSCALE_COSMOS_CONTAINER: cosmosContainerName
  CLOUDSCALE_COSMOS_VERIFY_TLS: 'true'
  // Below host.json's functionTimeout (5 minutes): an invocation gives its message back
  // before the host kills it.
  CLOUDSCALE_PROCESS_RETRY_SECONDS: '240'
  // Empty: the built-in rules (shared/domain/fraud_rules.json).
  CLOUDSCALE_FRAUD_RULES_FILE: ''
  CLOUDSCALE_KUSTO_CLUSTER_URI: kustoClusterUri
  CLOUDSCALE_KUSTO_INGEST_URI: kustoIngestUri
  CLOUDSCALE_KUSTO_DATABASE: kustoDatabaseName
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      // The host answers every preflight (204) and sets Access-Control-Allow-Origin for these
      // origins; the app then refuses a browser key used from an origin it is not bound to.
      // No credentials: write keys travel in headers or the URL, never in cookies.
      cors: {
        allowedOrigins: corsAllowedOrigins
        supportCredentials: false
      }
      appSettings: [for setting in items(appSettings): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        // `http` is the group of every HTTP-triggered function: warm instances spare ingest
        // the cold start its latency target cannot absorb.
        alwaysReady: alwaysReadyHttpInstances > 0 ? [
          {
            name: 'http'
            instanceCount: alwaysReadyHttpInstances
          }
        ] : []
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.13'
      }
    }
  }
}

output name string = site.name
output principalId string = site.identity.principalId
output defaultHostName string = site.properties.defaultHostName
