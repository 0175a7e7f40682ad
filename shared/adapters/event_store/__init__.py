"""The `EventStore` port (and `StoredEventHistory`, the same store read by commit time).

Azure: `cosmos_event_store` (Cosmos DB; `cosmos_container` defines the container).
Embedded: `embedded_event_store` (SQLite, with the change feed the local host reads).
`test_event_store_contract` runs the same assertions against both (cosmosdb-server for Azure).
"""
