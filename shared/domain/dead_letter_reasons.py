"""Every reason a message can be dead-lettered with, by the pipeline or by the broker.

An operator reads these in `cloudscale dlq list` (and in Service Bus's `DeadLetterReason`
property), fixes the cause, and replays. Two kinds, handled alike:

- *poison*: the process stage parked the message because retrying cannot help
  (`POISON_REASONS`; see `process.decoding` and `process.service`);
- the *broker* gave up on it (`BROKER_REASONS`): Service Bus, and the embedded queue with
  the same names, after `maxDeliveryCount` deliveries, or (Service Bus only) when its time
  to live expired.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BROKER_REASONS",
    "MAX_DELIVERY_COUNT_EXCEEDED",
    "POISON_REASONS",
    "PROCESSING_FAILED",
    "SCHEMA_INVALID",
    "TTL_EXPIRED",
    "UNDECODABLE",
    "UNKNOWN_SCHEMA_VERSION",
]

UNDECODABLE: Final = "UndecodableMessage"
"""The body is not a JSON object."""
UNKNOWN_SCHEMA_VERSION: Final = "UnknownSchemaVersion"
"""The envelope's `schemaVersion` is one this code does not read."""
SCHEMA_INVALID: Final = "SchemaInvalid"
"""The envelope does not validate (the description names the fields)."""
PROCESSING_FAILED: Final = "ProcessingFailed"
"""The message decoded but could not be scored: a defect to fix, then replay."""
POISON_REASONS: Final = (UNDECODABLE, UNKNOWN_SCHEMA_VERSION, SCHEMA_INVALID, PROCESSING_FAILED)
"""What the process stage parks a message with."""

MAX_DELIVERY_COUNT_EXCEEDED: Final = "MaxDeliveryCountExceeded"
"""Delivered `maxDeliveryCount` times without success (a dependency stayed down)."""
TTL_EXPIRED: Final = "TTLExpiredException"
"""Its time to live ran out before it was received (Service Bus, when dead-lettering on expiry)."""
BROKER_REASONS: Final = (MAX_DELIVERY_COUNT_EXCEEDED, TTL_EXPIRED)
"""What the broker dead-letters a message with, as Service Bus names them."""
