// CloudScale on Azure: every resource of one environment, in one resource group.
//
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/parameters/<env>.parameters.json
//
// One module per job: monitoring (Log Analytics, Application Insights), storage (host storage,
// the deployment container, the rate-limit table), Service Bus (the events and poison queues),
// Cosmos DB (the event store and the change-feed leases), Data Explorer (the analytics database
// and its schema script), the Function App on the Flex Consumption plan, the app identity's
// data-plane roles, the alert rules and the workbook (service levels, live events).
//
// Alerts: `alertActionGroupId` is the resource id of an existing action group, which every
// alert except the informational queue-depth one notifies. Empty (the default): the rules
// still fire and show in the portal, and notify no one. No action group is created here:
// who is paged, and how, belongs to the team that runs the service, not to this template.
//
// No key, connection string or listKeys() anywhere: every service is reached with the app's
// system-assigned identity, and key-based access is switched off wherever the service allows.

targetScope = 'resourceGroup'

@description('Short environment name (dev, prod, ...): lower-case letters and digits, part of every resource name.')
@minLength(2)
@maxLength(8)
param environmentName string

@description('Region of every resource; it must offer the Flex Consumption plan.')
param location string = resourceGroup().location

@description('Resource id of an existing action group the alerts notify; empty: alerts notify no one.')
param alertActionGroupId string = ''

@description('Flex Consumption: the most instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Flex Consumption: memory of each instance (CPU and network scale with it).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

// Ingest is async end to end (aio Table, Service Bus and Cosmos DB clients), so requests that
// overlap on one instance share its billed time; at 1 each request would pay for its own
// instance-seconds of waiting (docs/cost.md). Hence at least 2.
@description('Concurrent HTTP requests per instance before Flex adds an instance.')
@minValue(2)
@maxValue(1000)
param httpPerInstanceConcurrency int = 16

@description('Instances kept warm for the HTTP functions (0: scale to zero, pay a cold start).')
@minValue(0)
@maxValue(100)
param alwaysReadyHttpInstances int = 0

@description('Cosmos DB capacity: serverless (pay per request) or autoscale (provisioned, scales 10x down).')
@allowed([
  'serverless'
  'autoscale'
])
param cosmosThroughputMode string = 'serverless'

@description('Autoscale only: the events container\'s highest throughput (RU/s); it runs at 10% of it when idle.')
@minValue(1000)
param cosmosAutoscaleMaxThroughput int = 4000

@description('Data Explorer cluster SKU; a Dev(No SLA) SKU is single-node and without an SLA.')
param kustoSkuName string = 'Dev(No SLA)_Standard_E2a_v4'

@description('Data Explorer instance count (1 for a Dev(No SLA) SKU, 2 or more for an SLA).')
@minValue(1)
param kustoCapacity int = 1

// On Azure the platform's front end appends the address of the peer it accepted the
// connection from to X-Forwarded-For, so the rightmost entry is the client itself and nothing
// in front of the app needs trusting: empty. Put a proxy in front (Front Door, API Management,
// a gateway) and that proxy becomes the front end's peer; list its addresses here so the entry
// it appended is believed instead (ingest/client_ip.py).
@description('CLOUDSCALE_TRUSTED_PROXIES: addresses or CIDR blocks, comma-separated, whose X-Forwarded-For is believed.')
param trustedProxies string = ''

// Data-subject hashes (tombstones of erased users) are made under this key, which must never
// change. Empty: the app generates one and keeps it in the privacy table. Pass a Key Vault
// reference (@Microsoft.KeyVault(...)) to keep the key apart from the hashes (docs/privacy.md).
@secure()
@description('CLOUDSCALE_SUBJECT_KEY_SECRET: the key of data-subject hashes; empty: generated and kept by the app.')
param subjectKeySecret string = ''

@description('Object id of a user or group that inspects and replays dead letters (`cloudscale dlq`); empty: nobody.')
param deadLetterOperatorPrincipalId string = ''

// Browser producers send from their own sites. On Flex Consumption the Functions host's own CORS
// middleware answers every preflight before the app sees it, so the platform must allow the
// origins: any, by default. Which origins may write is decided per browser key, by the app
// (a browser key used from an origin it is not bound to gets 403); narrow this list only to
// keep other sites' browsers from even reading the answers (docs/tradeoffs.md, "Browser CORS").
@description('Origins the platform CORS allows (siteConfig.cors.allowedOrigins); [\'*\']: any. Credentials stay off.')
param corsAllowedOrigins array = ['*']

var env = toLower(environmentName)
var suffix = uniqueString(resourceGroup().id, env)
var compactEnvironment = replace(env, '-', '')
var names = {
  logAnalytics: 'log-cloudscale-${env}-${suffix}'
  appInsights: 'appi-cloudscale-${env}-${suffix}'
  // Storage accounts and Data Explorer clusters allow only lower-case letters and digits.
  storage: take('stcs${compactEnvironment}${suffix}', 24)
  kusto: take('adxcs${compactEnvironment}${suffix}', 22)
  serviceBus: 'sb-cloudscale-${env}-${suffix}'
  cosmos: 'cosmos-cloudscale-${env}-${suffix}'
  plan: 'plan-cloudscale-${env}-${suffix}'
  functionApp: 'func-cloudscale-${env}-${suffix}'
  deploymentContainer: 'app-package-${suffix}'
  alerts: 'cloudscale-${env}'
}
var tags = {
  application: 'cloudscale'
  environment: env
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'cloudscale-monitoring'
  params: {
    location: location
    tags: tags
    workspaceName: names.logAnalytics
    appInsightsName: names.appInsights
  }
}

module storage 'modules/storage.bicep' = {
  name: 'cloudscale-storage'
  params: {
    location: location
    tags: tags
    name: names.storage
    deploymentContainerName: names.deploymentContainer
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'cloudscale-servicebus'
  params: {
    location: location
    tags: tags
    name: names.serviceBus
  }
}

module cosmos 'modules/cosmos.bicep' = {
  name: 'cloudscale-cosmos'
  params: {
    location: location
    tags: tags
    name: names.cosmos
    throughputMode: cosmosThroughputMode
    autoscaleMaxThroughput: cosmosAutoscaleMaxThroughput
  }
}

module kusto 'modules/kusto.bicep' = {
  name: 'cloudscale-kusto'
  params: {
    location: location
    tags: tags
    name: names.kusto
    skuName: kustoSkuName
    capacity: kustoCapacity
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'cloudscale-functionapp'
  params: {
    location: location
    tags: tags
    planName: names.plan
    name: names.functionApp
    appInsightsName: monitoring.outputs.appInsightsName
    storageAccountName: storage.outputs.name
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    tableEndpoint: storage.outputs.tableEndpoint
    rateLimitTableName: storage.outputs.rateLimitTableName
    tenantsTableName: storage.outputs.tenantsTableName
    privacyTableName: storage.outputs.privacyTableName
    serviceBusNamespace: serviceBus.outputs.fullyQualifiedNamespace
    eventsQueueName: serviceBus.outputs.eventsQueueName
    poisonQueueName: serviceBus.outputs.poisonQueueName
    queueLockSeconds: serviceBus.outputs.eventsLockSeconds
    queueMaxDeliveryCount: serviceBus.outputs.eventsMaxDeliveryCount
    cosmosEndpoint: cosmos.outputs.endpoint
    cosmosDatabaseName: cosmos.outputs.databaseName
    cosmosContainerName: cosmos.outputs.eventsContainerName
    kustoClusterUri: kusto.outputs.clusterUri
    kustoIngestUri: kusto.outputs.ingestUri
    kustoDatabaseName: kusto.outputs.databaseName
    trustedProxies: trustedProxies
    subjectKeySecret: subjectKeySecret
    corsAllowedOrigins: corsAllowedOrigins
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
    alwaysReadyHttpInstances: alwaysReadyHttpInstances
  }
}

module roles 'modules/roles.bicep' = {
  name: 'cloudscale-roles'
  params: {
    principalId: functionApp.outputs.principalId
    storageAccountName: storage.outputs.name
    serviceBusNamespaceName: serviceBus.outputs.namespaceName
    eventsQueueName: serviceBus.outputs.eventsQueueName
    poisonQueueName: serviceBus.outputs.poisonQueueName
    cosmosAccountName: cosmos.outputs.accountName
    cosmosDatabaseName: cosmos.outputs.databaseName
    kustoClusterName: kusto.outputs.clusterName
    kustoDatabaseName: kusto.outputs.databaseName
    deadLetterOperatorPrincipalId: deadLetterOperatorPrincipalId
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'cloudscale-alerts'
  params: {
    location: location
    tags: tags
    namePrefix: names.alerts
    appInsightsId: monitoring.outputs.appInsightsId
    serviceBusNamespaceId: serviceBus.outputs.namespaceId
    eventsQueueName: serviceBus.outputs.eventsQueueName
    poisonQueueName: serviceBus.outputs.poisonQueueName
    actionGroupId: alertActionGroupId
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'cloudscale-workbook'
  params: {
    location: location
    tags: tags
    displayName: 'CloudScale: service levels and live events (${env})'
    appInsightsId: monitoring.outputs.appInsightsId
    serviceBusNamespaceId: serviceBus.outputs.namespaceId
    kustoClusterUri: kusto.outputs.clusterUri
    kustoDatabaseName: kusto.outputs.databaseName
  }
}

output resourceGroupName string = resourceGroup().name
output functionAppName string = functionApp.outputs.name
output ingestUrl string = 'https://${functionApp.outputs.defaultHostName}/api/events'
output healthUrl string = 'https://${functionApp.outputs.defaultHostName}/api/health'
output storageAccountName string = storage.outputs.name
output tableEndpoint string = storage.outputs.tableEndpoint
output serviceBusNamespace string = serviceBus.outputs.fullyQualifiedNamespace
output cosmosEndpoint string = cosmos.outputs.endpoint
output kustoClusterUri string = kusto.outputs.clusterUri
output kustoIngestUri string = kusto.outputs.ingestUri
output kustoDatabase string = kusto.outputs.databaseName
output appInsightsName string = monitoring.outputs.appInsightsName
