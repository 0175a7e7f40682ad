"""Service Bus dead letters as `DeadLetter`s, their ids, and the message a replay sends.

Ids name the queue and the sequence number (`dlq-42`: the events queue's dead-letter
sub-queue; `poison-7`: the poison queue), since the two queues number their messages
independently. Received application properties come back from the SDK with bytes keys and
values; `to_dead_letter` turns them back into what was sent, less the dead-letter reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Final

from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.amqp import AmqpMessageBodyType

from shared.adapters.dead_letters.servicebus_sink import DEAD_LETTER_DESCRIPTION_PROPERTY, DEAD_LETTER_REASON_PROPERTY
from shared.domain.envelope import MAX_MESSAGE_ID_LENGTH, QueueMessage
from shared.ports import DeadLetter, DeadLetterSource

__all__ = ["SOURCES", "format_id", "parse_service_bus_id", "replay_message", "replay_message_id", "to_dead_letter"]

_REPLAY_NAMESPACE: Final = uuid.UUID("5b0c3f5e-8a4c-5d0e-9c1a-63a1f0d2e7b4")
"""A fixed namespace for `replay_message_id`'s name-based UUIDs (any fixed value serves)."""
_ID_PREFIX: Final[Mapping[DeadLetterSource, str]] = {"dead-letter": "dlq", "poison": "poison"}
_SOURCE_OF_PREFIX: Final = {prefix: source for source, prefix in _ID_PREFIX.items()}
SOURCES: Final = tuple(_ID_PREFIX)
"""Both Service Bus sources, in the order the browser reads them."""


def parse_service_bus_id(dead_letter_id: str) -> tuple[DeadLetterSource, int] | None:
    """`"dlq-42"` -> `("dead-letter", 42)`; None if the id names no Service Bus dead letter."""
    prefix, _, number = dead_letter_id.strip().lower().rpartition("-")
    source = _SOURCE_OF_PREFIX.get(prefix)
    if source is None or not (number.isascii() and number.isdigit()):
        return None
    return source, int(number)


def replay_message(dead_letter: DeadLetter) -> QueueMessage:
    """The message a replay sends: the original, under a message id derived from the dead letter.

    Not the original id: the events queue already saw it, and while it is inside the queue's
    duplicate-detection window Service Bus would accept the resend and silently drop it (after
    the dead letter was completed: a loss). The derived id is fixed per dead letter, so a
    replay retried after a crash between send and complete is still dropped as a duplicate;
    and the event store is keyed on (tenantId, eventId) in the body, so the event is stored once.

    The id reads `<original id>:replay:<dead-letter id>`. Where that would pass Service Bus's
    `MAX_MESSAGE_ID_LENGTH` (a long tenant id, or a replay of a replay), the original id is
    replaced by a name-based UUID of it: still one fixed id per dead letter, still within the
    limit, and the original id stays readable in the `ReplayOf` property.
    """
    original = dead_letter.message
    return QueueMessage(
        message_id=replay_message_id(original.message_id, dead_letter.id),
        body=original.body,
        content_type=original.content_type,
        subject=original.subject,
        correlation_id=original.correlation_id,
        application_properties={**original.application_properties, "ReplayOf": original.message_id},
    )


def replay_message_id(message_id: str, dead_letter_id: str) -> str:
    """`<message id>:replay:<dead-letter id>`, within `MAX_MESSAGE_ID_LENGTH`; see `replay_message`."""
    suffix = f":replay:{dead_letter_id}"
    if len(message_id) + len(suffix) <= MAX_MESSAGE_ID_LENGTH:
        return message_id + suffix
    return f"{uuid.uuid5(_REPLAY_NAMESPACE, message_id)}{suffix}"


def format_id(source: DeadLetterSource, sequence_number: int) -> str:
    return f"{_ID_PREFIX[source]}-{sequence_number}"


def to_dead_letter(source: DeadLetterSource, message: ServiceBusReceivedMessage) -> DeadLetter:
    """Map a received message onto a `DeadLetter` (and the `QueueMessage` a replay sends)."""
    properties = _text_properties(message.application_properties)
    reason = properties.pop(DEAD_LETTER_REASON_PROPERTY, None)
    description = properties.pop(DEAD_LETTER_DESCRIPTION_PROPERTY, None)
    queue_message = QueueMessage(
        message_id=message.message_id or "",
        body=_body_bytes(message),
        content_type=message.content_type or "application/json",
        subject=message.subject,
        correlation_id=message.correlation_id,
        application_properties=properties,
    )
    poison = source == "poison"
    return DeadLetter(
        id=format_id(source, message.sequence_number or 0),
        source=source,
        message=queue_message,
        reason=None if reason is None else str(reason),
        description=None if description is None else str(description),
        # A poison copy was enqueued when it was parked; its own delivery count only counts
        # this tool's receives, and the original's was not recorded.
        delivery_count=None if poison else message.delivery_count,
        enqueued_at=None if poison else message.enqueued_time_utc,
        dead_lettered_at=message.enqueued_time_utc if poison else None,
    )


def _text_properties(raw: Mapping[str | bytes, object] | None) -> dict[str, str | int]:
    """Received application properties come back with bytes keys and bytes string values."""
    properties: dict[str, str | int] = {}
    for key, value in (raw or {}).items():
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        if isinstance(value, bytes):
            properties[name] = value.decode("utf-8", "replace")
        elif isinstance(value, str | int):
            properties[name] = value
        else:  # float, UUID, AMQP timestamp: not types this pipeline sends; kept as text
            properties[name] = str(value)
    return properties


def _body_bytes(message: ServiceBusReceivedMessage) -> bytes:
    """The body as bytes. This pipeline only sends data bodies; anything else is shown as text."""
    body = message.body
    if message.body_type == AmqpMessageBodyType.DATA:
        return body if isinstance(body, bytes) else b"".join(body)
    if isinstance(body, bytes):
        return body
    return str(body).encode()
