// Alert rules, with the thresholds of the service's alerting strategy:
//
// | severity      | condition                                         | rule                     |
// |---------------|---------------------------------------------------|--------------------------|
// | 0 critical    | error rate above 5% for 5 minutes                 | log query, App Insights  |
// | 2 warning     | ingest p99 latency above 500 ms for 10 minutes    | log query, App Insights  |
// | 3 info        | more than 5,000 messages waiting on `events`      | Service Bus metric       |
// | 2 warning     | a message in `events`' dead-letter queue          | Service Bus metric       |
// | 2 warning     | a message parked on `events-poison`               | Service Bus metric       |
//
// Requests come from the Functions host's own request telemetry (table `requests`: one row per
// invocation, `duration` in milliseconds), so they are counted even when the app's code fails
// before its own instruments run.

param location string
param tags object
param namePrefix string
param appInsightsId string
param serviceBusNamespaceId string
param eventsQueueName string
param poisonQueueName string

@description('Resource id of the action group to notify; empty: the rules notify no one.')
param actionGroupId string = ''

var actionGroups = empty(actionGroupId) ? [] : [
  actionGroupId
]
var metricActions = [for group in actionGroups: {
  actionGroupId: group
}]

// The pipeline's own functions. An error is a 5xx answer or a failed invocation; a 4xx answer
// (bad input, rate limited) is the caller's, not the service's. Fewer than 20 invocations in
// the window are not judged: one failure out of three is not an outage worth waking anyone.
var errorRateQuery = '''
requests
| where name in ("ingest_events", "process_event", "events_to_analytics")
| summarize total = count(), failed = countif(toint(resultCode) >= 500 or (success == false and not(resultCode startswith "4")))
| where total >= 20
| extend errorRatePercent = 100.0 * failed / total
'''

var ingestLatencyQuery = '''
requests
| where name == "ingest_events"
| summarize p99DurationMs = percentile(duration, 99)
'''

resource errorRate 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-error-rate'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'CloudScale: error rate above 5% for 5 minutes'
    description: 'More than 5% of ingest, process and change-feed invocations failed or answered 5xx over the last 5 minutes.'
    severity: 0
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: errorRateQuery
          metricMeasureColumn: 'errorRatePercent'
          timeAggregation: 'Maximum'
          operator: 'GreaterThan'
          threshold: 5
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

resource ingestLatency 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-ingest-p99'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'CloudScale: ingest p99 latency above 500 ms for 10 minutes'
    description: 'The 99th percentile of POST /api/events durations over the last 10 minutes is above 500 ms.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT10M'
    criteria: {
      allOf: [
        {
          query: ingestLatencyQuery
          metricMeasureColumn: 'p99DurationMs'
          timeAggregation: 'Maximum'
          operator: 'GreaterThan'
          threshold: 500
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

// Informational: a backlog is what the queue is for, so this one shows on the dashboard and
// in the alert list and notifies no one.
resource queueDepth 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-queue-depth'
  location: 'global'
  tags: tags
  properties: {
    description: 'More than 5,000 messages waiting on the events queue.'
    severity: 3
    enabled: true
    scopes: [
      serviceBusNamespaceId
    ]
    evaluationFrequency: 'PT1M'
    windowSize: 'PT5M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'ActiveMessages'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'ActiveMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                eventsQueueName
              ]
            }
          ]
          timeAggregation: 'Average'
          operator: 'GreaterThan'
          threshold: 5000
        }
      ]
    }
    autoMitigate: true
    actions: []
  }
}

// A dead letter on the events queue is an event the broker gave up on (store down for many
// retry budgets in a row, or expired): it needs `cloudscale dlq replay`.
resource deadLetters 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-dead-letters'
  location: 'global'
  tags: tags
  properties: {
    description: 'Messages in the events queue\'s dead-letter queue: inspect and replay with `cloudscale dlq`.'
    severity: 2
    enabled: true
    scopes: [
      serviceBusNamespaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'DeadletteredMessages'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                eventsQueueName
              ]
            }
          ]
          timeAggregation: 'Maximum'
          operator: 'GreaterThan'
          threshold: 0
        }
      ]
    }
    autoMitigate: true
    actions: metricActions
  }
}

// A parked message is one the process stage could never handle (undecodable, unknown schema
// version, invalid): someone has to look at the producer that sent it.
resource poisonMessages 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-poison-messages'
  location: 'global'
  tags: tags
  properties: {
    description: 'Messages parked on the poison queue: inspect with `cloudscale dlq`.'
    severity: 2
    enabled: true
    scopes: [
      serviceBusNamespaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'ActiveMessages'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'ActiveMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                poisonQueueName
              ]
            }
          ]
          timeAggregation: 'Maximum'
          operator: 'GreaterThan'
          threshold: 0
        }
      ]
    }
    autoMitigate: true
    actions: metricActions
  }
}
