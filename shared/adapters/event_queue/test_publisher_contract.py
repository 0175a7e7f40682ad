"""The `EventPublisher` contract, run against both adapters: the embedded queue, and Service Bus.

There is no Service Bus broker here, so the Service Bus publisher runs as in
`test_servicebus_publisher`: the real `ServiceBusPublisher` and the real SDK message and batch
types, with a fake `ServiceBusSender` at the lowest boundary that records what was sent. "What
the queue holds" is read per adapter (`Queue.held`): the embedded queue's messages, or the
Service Bus messages the sender sent, mapped back field by field. What only one adapter does
(batch packing and link checks; locks, delivery counts and durability) is in their own tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.adapters.event_queue.embedded_publisher import EmbeddedPublisher
from shared.adapters.event_queue.embedded_queue import EmbeddedQueue
from shared.adapters.event_queue.servicebus_publisher import ServiceBusPublisher
from shared.adapters.event_queue.test_servicebus_publisher import SenderFactory, as_queue_message, queue_message
from shared.domain.envelope import QueueMessage
from shared.ports import EventPublisher, PublishError


@dataclass
class Queue:
    """One adapter under test, and how to read the messages its queue holds, oldest first."""

    publisher: EventPublisher
    held: Callable[[], Awaitable[list[QueueMessage]]]


@pytest.fixture(params=["embedded", "servicebus"])
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Queue]:
    if request.param == "embedded":
        embedded = EmbeddedQueue(tmp_path / "queue.sqlite3")

        async def waiting() -> list[QueueMessage]:
            return await embedded.peek(100)

        publisher: EventPublisher = EmbeddedPublisher(embedded)
        yield Queue(publisher, waiting)
        await publisher.close()
        return
    factory = SenderFactory()

    async def sent() -> list[QueueMessage]:
        return [as_queue_message(message) for batch in factory.sender.sent for message in batch]

    publisher = ServiceBusPublisher(factory, queue_name="events")
    yield Queue(publisher, sent)
    await publisher.close()


async def test_published_messages_are_held_in_order_as_they_were_sent(queue: Queue) -> None:
    messages = [queue_message(number) for number in range(5)]

    await queue.publisher.publish(messages)

    assert await queue.held() == messages


async def test_a_message_without_its_optional_headers_keeps_them_absent(queue: Queue) -> None:
    bare = QueueMessage(message_id="m-1", body=b"{}")

    await queue.publisher.publish([bare])

    assert await queue.held() == [bare]


async def test_an_empty_publish_holds_nothing(queue: Queue) -> None:
    await queue.publisher.publish([])

    assert await queue.held() == []


async def test_check_passes_on_a_reachable_queue(queue: Queue) -> None:
    await queue.publisher.check()


async def test_a_closed_publisher_refuses_with_the_port_error(queue: Queue) -> None:
    await queue.publisher.publish([queue_message(1)])

    await queue.publisher.close()

    with pytest.raises(PublishError):
        await queue.publisher.publish([queue_message(2)])
