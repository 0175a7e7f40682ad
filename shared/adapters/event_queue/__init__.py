"""The `EventPublisher` port: where ingest queues events for the process stage.

Azure: `servicebus_publisher` (Service Bus, duplicate detection on the message id).
Embedded: `embedded_queue`, a durable peek-lock queue in one SQLite file with Service Bus's
semantics (lock, delivery count, dead-letter table); `embedded_publisher` adapts it to the
port, `dead_letter_table` and `queue_schema` hold its SQL, and `queue_integrity` refuses a
queue file that lost acknowledged messages. `test_publisher_contract` runs the same assertions
against both publishers (Service Bus faked at the SDK's sender).
"""
