"""`DeadLetterSink` on Azure Service Bus: the poison queue the process stage parks messages in.

The Python Service Bus trigger cannot settle messages itself, so the process stage parks a
message that can never succeed by sending a copy to the poison queue (`settings.poison_queue`)
and lets the host complete the original. The copy keeps the original message id, body and
properties, plus the reason in the same application properties the broker uses for its own
dead letters (`DeadLetterReason`, `DeadLetterErrorDescription`), so both kinds read alike in
`servicebus_browser`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from shared.adapters.event_queue.servicebus_publisher import create_service_bus_publisher
from shared.domain.envelope import QueueMessage
from shared.ports import EventPublisher, PortError
from shared.settings import Settings

__all__ = [
    "DEAD_LETTER_DESCRIPTION_PROPERTY",
    "DEAD_LETTER_REASON_PROPERTY",
    "MAX_DESCRIPTION_CHARS",
    "ServiceBusDeadLetterSink",
    "create_service_bus_dead_letter_sink",
]

DEAD_LETTER_REASON_PROPERTY: Final = "DeadLetterReason"
DEAD_LETTER_DESCRIPTION_PROPERTY: Final = "DeadLetterErrorDescription"
"""The application properties Service Bus itself sets on dead letters; the sink sets the same."""
MAX_DESCRIPTION_CHARS: Final = 4096
"""Service Bus caps its own dead-letter descriptions at 4 KiB; the poison copy keeps to that."""


class ServiceBusDeadLetterSink:
    """`DeadLetterSink` that parks a message in the Service Bus poison queue.

    `publisher` sends to the poison queue (`create_service_bus_dead_letter_sink` builds it).
    Parking the same delivery twice (the host crashed before completing the original) sends
    the same message id twice, which the poison queue's duplicate detection drops.
    """

    def __init__(self, publisher: EventPublisher, *, queue_name: str | None = None) -> None:
        """`queue_name` only names the queue in error messages."""
        self._publisher = publisher
        self._where = f"poison queue {queue_name!r}" if queue_name else "the poison queue"

    async def dead_letter(self, message: QueueMessage, reason: str, description: str) -> None:
        """Send `message` to the poison queue with the reason; return once the broker has it."""
        properties: dict[str, str | int] = {
            **message.application_properties,
            DEAD_LETTER_REASON_PROPERTY: reason,
            DEAD_LETTER_DESCRIPTION_PROPERTY: description[:MAX_DESCRIPTION_CHARS],
        }
        try:
            await self._publisher.publish([replace(message, application_properties=properties)])
        except PortError as exc:
            raise PortError(
                f"Parking message {message.message_id!r} ({reason}) in {self._where} failed: {exc}"
            ) from exc

    async def close(self) -> None:
        await self._publisher.close()


def create_service_bus_dead_letter_sink(settings: Settings) -> ServiceBusDeadLetterSink:
    """The sink on `settings.poison_queue`; connects lazily, on first use."""
    publisher = create_service_bus_publisher(settings, queue_name=settings.poison_queue)
    return ServiceBusDeadLetterSink(publisher, queue_name=settings.poison_queue)
