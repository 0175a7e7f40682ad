"""Behaviour of the Service Bus publisher, with no network.

The fake sits at the lowest boundary, in place of the SDK's `ServiceBusSender`: it hands out
real `ServiceBusMessageBatch` objects (small, so they really fill) and records what was sent.
Everything above it (message mapping, batching, size checks) is the real SDK code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from uuid import UUID

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch
from azure.servicebus.aio import ServiceBusSender
from azure.servicebus.exceptions import (
    ServiceBusAuthorizationError,
    ServiceBusConnectionError,
    ServiceBusError,
)

from shared.adapters.event_queue.servicebus_publisher import (
    ServiceBusPublisher,
    create_service_bus_publisher,
    service_bus_sender_factory,
)
from shared.domain.envelope import Envelope, QueueMessage, to_queue_message
from shared.domain.events import Event
from shared.ports import PublishError
from shared.settings import SettingsError, load_settings

BATCH_BYTES = 2048
"""Small enough that a few of the test messages fill a batch."""

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def queue_message(number: int, *, padding: int = 200) -> QueueMessage:
    """A queue message built the way ingest builds it, with a deterministic eventId."""
    event = Event.model_validate(
        {
            "eventType": "page_view",
            "tenantId": "tenant-a",
            "eventId": str(UUID(int=number + 1)),
            "correlationId": f"corr-{number}",
            "properties": {"padding": "x" * padding},
        }
    )
    envelope = Envelope.model_validate(
        {
            "event": event,
            "receivedAt": datetime(2026, 1, 31, 12, 0, tzinfo=UTC),
            "clientNetwork": "203.0.113.0/24",
            "clientKey": "0123456789abcdef0123456789abcdef",
            "ipRequestsLastMinute": 3,
            "traceContext": {"traceparent": TRACEPARENT},
        }
    )
    return to_queue_message(envelope)


def as_queue_message(sent: ServiceBusMessage) -> QueueMessage:
    """A sent Service Bus message read back field by field, as the queue would hold it."""
    properties = {str(key): value for key, value in (sent.application_properties or {}).items()}
    return QueueMessage(
        message_id=str(sent.message_id),
        body=b"".join(sent.body),
        content_type=sent.content_type or "",
        subject=sent.subject,
        correlation_id=sent.correlation_id,
        application_properties=properties,  # type: ignore[arg-type]
    )


def messages_in(batch: ServiceBusMessageBatch) -> list[ServiceBusMessage]:
    # The SDK keeps the added messages on the batch (its own sender reads this list when it
    # re-batches); there is no public accessor, so the fake reads it to see what was sent.
    return list(batch._messages)


class RecordingSender:
    """Stands in for `azure.servicebus.aio.ServiceBusSender`; records every call."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.opens = 0
        self.sent: list[list[ServiceBusMessage]] = []
        self.send_timeouts: list[float | None] = []
        self.closes = 0
        self.send_errors: list[Exception | None] = []
        """Outcome of each coming send in order: an exception to raise, or None to succeed."""
        self.open_error: Exception | None = None
        self.open_delay = 0.0
        self._in_use = False

    async def __aenter__(self) -> RecordingSender:
        self.opens += 1
        await asyncio.sleep(self.open_delay)
        if self.open_error is not None:
            raise self.open_error
        return self

    async def create_message_batch(self) -> ServiceBusMessageBatch:
        return ServiceBusMessageBatch(max_size_in_bytes=BATCH_BYTES)

    async def send_messages(
        self,
        message: ServiceBusMessageBatch,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK's signature, recorded not enforced
    ) -> None:
        # The SDK sender is not coroutine-safe: fail loudly if two sends overlap.
        assert not self._in_use, "sender used by two coroutines at once"
        self._in_use = True
        try:
            await asyncio.sleep(0)  # yield, so an unguarded concurrent publish would overlap
            outcome = self.send_errors.pop(0) if self.send_errors else None
            if outcome is not None:
                raise outcome
            self.sent.append(messages_in(message))
            self.send_timeouts.append(timeout)
        finally:
            self._in_use = False

    async def close(self) -> None:
        self.closes += 1
        self.events.append("sender closed")

    def sent_ids(self) -> list[str | None]:
        return [message.message_id for batch in self.sent for message in batch]


class SenderFactory:
    """Builds the one fake sender and registers a fake client's close, like the real factory."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.sender = RecordingSender(self.events)
        self.calls = 0

    def __call__(self, resources: AsyncExitStack) -> RecordingSender:
        self.calls += 1
        resources.push_async_callback(self._close_client)
        return self.sender

    async def _close_client(self) -> None:
        self.events.append("client closed")


@pytest.fixture
def factory() -> SenderFactory:
    return SenderFactory()


@pytest.fixture
def publisher(factory: SenderFactory) -> ServiceBusPublisher:
    return ServiceBusPublisher(factory, queue_name="events", send_timeout=7.5, check_timeout=0.2)


def ids(messages: Sequence[QueueMessage]) -> list[str | None]:
    return [message.message_id for message in messages]


async def test_each_message_is_mapped_onto_a_real_service_bus_message(
    publisher: ServiceBusPublisher, factory: SenderFactory
) -> None:
    original = queue_message(1)

    await publisher.publish([original])

    [[sent]] = factory.sender.sent
    assert isinstance(sent, ServiceBusMessage)
    assert sent.message_id == original.message_id == f"tenant-a/{UUID(int=2)}"
    assert sent.content_type == "application/json"
    assert sent.subject == "page_view"
    assert sent.correlation_id == "corr-1"
    assert sent.application_properties == {
        "schemaVersion": 2,
        "tenantId": "tenant-a",
        "eventType": "page_view",
        "traceparent": TRACEPARENT,
    }
    assert b"".join(sent.body) == original.body
    assert factory.sender.send_timeouts == [7.5]


async def test_absent_optional_fields_stay_absent(publisher: ServiceBusPublisher, factory: SenderFactory) -> None:
    await publisher.publish([QueueMessage(message_id="m-1", body=b"{}")])

    [[sent]] = factory.sender.sent
    assert (sent.message_id, sent.subject, sent.correlation_id) == ("m-1", None, None)
    assert b"".join(sent.body) == b"{}"


async def test_a_full_batch_is_sent_and_a_new_one_started_keeping_order(
    publisher: ServiceBusPublisher, factory: SenderFactory
) -> None:
    messages = [queue_message(number) for number in range(10)]

    await publisher.publish(messages)

    batches = factory.sender.sent
    assert len(batches) >= 3, "the small batches should have filled several times"
    assert all(len(batch) > 1 for batch in batches[:-1]), "a batch was sent before it was full"
    assert factory.sender.sent_ids() == ids(messages), "a message was lost, duplicated or reordered"
    bodies = [b"".join(message.body) for batch in batches for message in batch]
    assert bodies == [message.body for message in messages]


async def test_a_batch_is_sent_only_when_the_next_message_does_not_fit(
    publisher: ServiceBusPublisher, factory: SenderFactory
) -> None:
    messages = [queue_message(number) for number in range(10)]

    await publisher.publish(messages)

    position = 0
    for batch in factory.sender.sent[:-1]:
        position += len(batch)
        # Rebuild the sent batch and show the next message would really have overflowed it.
        probe = ServiceBusMessageBatch(max_size_in_bytes=BATCH_BYTES)
        for message in batch:
            probe.add_message(message)
        with pytest.raises(ValueError, match="size limit"):
            probe.add_message(ServiceBusMessage(messages[position].body, message_id=messages[position].message_id))


async def test_a_message_too_big_for_an_empty_batch_fails_with_nothing_sent(
    publisher: ServiceBusPublisher, factory: SenderFactory
) -> None:
    huge = queue_message(99, padding=BATCH_BYTES * 2)
    messages = [queue_message(1), queue_message(2), queue_message(3), queue_message(4), huge]

    with pytest.raises(PublishError, match=rf"{huge.message_id}.*larger than the largest batch") as caught:
        await publisher.publish(messages)

    assert str(BATCH_BYTES) in str(caught.value)
    assert factory.sender.sent == [], "the batches before the oversize message must not have been sent"


async def test_a_send_error_becomes_publish_error(publisher: ServiceBusPublisher, factory: SenderFactory) -> None:
    failure = ServiceBusConnectionError(message="link detached")
    factory.sender.send_errors = [failure]

    with pytest.raises(PublishError, match="link detached") as caught:
        await publisher.publish([queue_message(1)])

    assert caught.value.__cause__ is failure


async def test_a_failure_after_some_batches_leaves_them_sent_and_a_full_resend_repeats_the_ids(
    publisher: ServiceBusPublisher, factory: SenderFactory
) -> None:
    messages = [queue_message(number) for number in range(10)]
    factory.sender.send_errors = [None, ServiceBusError("server busy")]

    with pytest.raises(PublishError, match=r"after 1 batch\(es\)") as caught:
        await publisher.publish(messages)
    assert isinstance(caught.value.__cause__, ServiceBusError)
    first_batch_ids = factory.sender.sent_ids()
    assert first_batch_ids == ids(messages)[: len(first_batch_ids)]

    # What the producer's retry does: everything again, under the same ids, so the broker's
    # duplicate detection drops the ones it already has.
    await publisher.publish(messages)
    assert factory.sender.sent_ids() == first_batch_ids + ids(messages)


async def test_the_sender_is_created_once_and_reused(publisher: ServiceBusPublisher, factory: SenderFactory) -> None:
    await publisher.check()
    await publisher.publish([queue_message(1)])
    await publisher.publish([queue_message(2)])

    assert factory.calls == 1
    assert factory.sender.sent_ids() == [queue_message(1).message_id, queue_message(2).message_id]


async def test_concurrent_publishes_share_one_sender_one_at_a_time(
    publisher: ServiceBusPublisher, factory: SenderFactory
) -> None:
    groups = [[queue_message(group * 10 + number) for number in range(5)] for group in range(4)]

    await asyncio.gather(*(publisher.publish(group) for group in groups))

    assert factory.calls == 1
    assert sorted(factory.sender.sent_ids(), key=str) == sorted(ids([m for g in groups for m in g]), key=str)


async def test_nothing_is_created_for_an_empty_publish(publisher: ServiceBusPublisher, factory: SenderFactory) -> None:
    await publisher.publish([])

    assert factory.calls == 0


async def test_check_opens_the_sender_link(publisher: ServiceBusPublisher, factory: SenderFactory) -> None:
    await publisher.check()

    assert factory.calls == 1
    assert factory.sender.opens == 1
    assert factory.sender.sent == [], "a readiness check must not send anything"


async def test_check_fails_when_the_link_cannot_be_opened(
    publisher: ServiceBusPublisher, factory: SenderFactory
) -> None:
    failure = ServiceBusAuthorizationError(message="'Send' claim(s) are required")
    factory.sender.open_error = failure

    with pytest.raises(PublishError, match="Send") as caught:
        await publisher.check()

    assert caught.value.__cause__ is failure


async def test_check_gives_up_after_its_timeout(publisher: ServiceBusPublisher, factory: SenderFactory) -> None:
    factory.sender.open_delay = 5.0

    with pytest.raises(PublishError, match="no sender link within"):
        await publisher.check()


async def test_close_closes_the_sender_then_the_client_once(
    publisher: ServiceBusPublisher, factory: SenderFactory
) -> None:
    await publisher.publish([queue_message(1)])

    await publisher.close()
    await publisher.close()

    assert factory.sender.closes == 1
    assert factory.events == ["sender closed", "client closed"]


async def test_a_closed_publisher_refuses_work(publisher: ServiceBusPublisher, factory: SenderFactory) -> None:
    await publisher.close()

    with pytest.raises(PublishError, match="closed"):
        await publisher.publish([queue_message(1)])
    with pytest.raises(PublishError, match="closed"):
        await publisher.check()
    assert factory.calls == 0


@pytest.mark.parametrize(
    ("environ", "namespace"),
    [
        ({"ServiceBusConnection__fullyQualifiedNamespace": "cs-test.servicebus.windows.net"}, "cs-test"),
        (
            {
                "ServiceBusConnection": "Endpoint=sb://cs-conn.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=dg=="
            },
            "cs-conn",
        ),
    ],
)
async def test_the_real_factory_builds_an_unconnected_sender_for_the_events_queue(
    environ: dict[str, str], namespace: str
) -> None:
    settings = load_settings({**environ, "CLOUDSCALE_EVENTS_QUEUE": "ingest-events"})

    async with AsyncExitStack() as resources:
        sender = service_bus_sender_factory(settings)(resources)
        resources.push_async_callback(sender.close)

        assert isinstance(sender, ServiceBusSender)
        assert sender.entity_name == "ingest-events"
        assert sender.fully_qualified_namespace == f"{namespace}.servicebus.windows.net"


async def test_create_connects_nothing_and_closes_cleanly_unused() -> None:
    settings = load_settings({"ServiceBusConnection__fullyQualifiedNamespace": "cs-test.servicebus.windows.net"})

    publisher = create_service_bus_publisher(settings)
    await publisher.close()


def test_create_needs_a_namespace_or_connection_string() -> None:
    with pytest.raises(SettingsError, match="ServiceBusConnection__fullyQualifiedNamespace"):
        create_service_bus_publisher(load_settings({}))


async def test_a_failed_publish_fails_the_check_until_a_publish_succeeds(
    publisher: ServiceBusPublisher, factory: SenderFactory
) -> None:
    # GIVEN a publish the broker refused (the link itself stays open)
    factory.sender.send_errors = [ServiceBusConnectionError(message="quota exceeded")]
    with pytest.raises(PublishError):
        await publisher.publish([queue_message(1)])

    # THEN readiness fails on that evidence, without sending anything itself
    with pytest.raises(PublishError, match="most recent publish failed"):
        await publisher.check()
    assert factory.sender.sent == []

    # AND once a publish succeeds, it passes again
    await publisher.publish([queue_message(2)])
    await publisher.check()


async def test_a_publish_failure_is_forgotten_after_its_memory(factory: SenderFactory) -> None:
    publisher = ServiceBusPublisher(factory, queue_name="events", check_timeout=0.2, failure_memory=0.05)
    factory.sender.send_errors = [ServiceBusConnectionError(message="link detached")]
    with pytest.raises(PublishError):
        await publisher.publish([queue_message(1)])

    await asyncio.sleep(0.1)

    await publisher.check()  # the link opens, and the old failure no longer counts
