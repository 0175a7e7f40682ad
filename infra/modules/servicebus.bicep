// Service Bus: the namespace and its two queues. `events` carries accepted events from ingest
// to the process stage; `events-poison` holds the messages the process stage parks because
// they can never succeed (`cloudscale dlq` lists and replays them). Identity access only.

param location string
param tags object
param name string

// Standard at least: Basic has no duplicate detection, which ingest's retries rely on.
@description('Namespace tier.')
@allowed([
  'Standard'
  'Premium'
])
param skuName string = 'Standard'

var eventsQueueName = 'events'
var poisonQueueName = 'events-poison'

// Deliveries before the broker dead-letters a message: the app's
// CLOUDSCALE_QUEUE_MAX_DELIVERY_COUNT default. Each delivery retries a failing store for up to
// 4 minutes inside the invocation, so an outage shorter than 10 x (4 min - 5 s) = 39 minutes dead-letters
// nothing (shared/domain/delivery.py).
var eventsMaxDeliveryCount = 10

// The peek-lock: the app's CLOUDSCALE_QUEUE_LOCK_SECONDS default, Service Bus's longest. The
// process stage takes batches, and the Functions host does not renew a batch's locks
// (maxAutoLockRenewalDuration is for single dispatch only), so an invocation must settle within
// this lock: the 4-minute store retry budget leaves it a fifth of the 5 minutes. The price: a
// batch held by an instance that crashed waits up to 5 minutes before another instance gets it.
var eventsLockSeconds = 300

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuName
  }
  properties: {
    // No SAS keys: senders and receivers authenticate with Entra identities.
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
  }
}

resource eventsQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: eventsQueueName
  properties: {
    // Ingest sends each event with message_id = eventId. A send that fails after part of a
    // batch went out answers 503, and the producer resends everything: the broker drops the
    // ids it already has.
    requiresDuplicateDetection: true
    // Ten minutes covers a producer's retry after a 503 (Retry-After is seconds) with a wide
    // margin. A longer window makes the broker keep and look up more ids per send, which the
    // service documents as a throughput cost; a duplicate arriving later still changes
    // nothing, because the process stage stores each eventId once.
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    maxDeliveryCount: eventsMaxDeliveryCount
    lockDuration: 'PT${eventsLockSeconds}S'
    // An event that waited out its time to live goes to the dead-letter queue, where
    // `cloudscale dlq replay` can bring it back, instead of vanishing.
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
    // The most Standard allows: the backlog a long store outage builds up while ingest keeps
    // accepting. When it is full, ingest answers 503 and accepts nothing it cannot queue.
    maxSizeInMegabytes: 5120
    requiresSession: false
    enableBatchedOperations: true
  }
}

resource poisonQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: poisonQueueName
  properties: {
    // `cloudscale dlq replay` receives in peek-lock and abandons every message it passes over,
    // and each abandon counts a delivery: with a low count, browsing alone would move parked
    // messages on into this queue's own dead-letter queue, where the tool does not look.
    maxDeliveryCount: 1000
    lockDuration: 'PT1M'
    // Parked messages wait for a person; the poison alert fires on the first one long before.
    defaultMessageTimeToLive: 'P90D'
    deadLetteringOnMessageExpiration: true
    requiresDuplicateDetection: false
    requiresSession: false
  }
}

output namespaceName string = namespace.name
output namespaceId string = namespace.id
// The host name (<namespace>.servicebus.windows.net), taken from the namespace's endpoint
// (https://<host>:443/) rather than built, so it is right in every Azure cloud.
output fullyQualifiedNamespace string = split(split(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0], '/')[0]
output eventsQueueName string = eventsQueue.name
output poisonQueueName string = poisonQueue.name
output eventsLockSeconds int = eventsLockSeconds
output eventsMaxDeliveryCount int = eventsMaxDeliveryCount
