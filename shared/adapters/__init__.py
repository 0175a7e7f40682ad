"""Adapters: one folder per port of `shared.ports`, its Azure and embedded adapters side by side.

- `event_queue/`: `EventPublisher` (Service Bus; the embedded SQLite queue).
- `event_store/`: `EventStore` and `StoredEventHistory` (Cosmos DB; SQLite with a change feed).
- `rate_limit/`: `RateLimitStore` (Table Storage; SQLite).
- `analytics/`: `AnalyticsSink` and `AnalyticsHistory` (Data Explorer; SQLite).
- `dead_letters/`: `DeadLetterSink` and `DeadLetterBrowser` (the Service Bus poison queue and
  dead-letter sub-queue; the embedded queue's dead-letter table).

Each folder also holds the tests of its adapters, and a contract suite (`test_*_contract.py`)
that runs the same assertions against both. Two folders serve no port: `sqlite/`, the
machinery every embedded adapter shares, and `instance/`, what one host process knows about
itself. Only the composition root (`shared.bootstrap`) chooses between the adapters.
"""
