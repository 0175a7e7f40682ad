"""The Service Bus dead-letter sink and browser, with no network.

The fakes sit at the lowest boundary. The receivers stand in for `ServiceBusReceiver` and
hand out real `ServiceBusReceivedMessage`s, decoded by the SDK from AMQP bytes shaped like
the broker's (bytes-keyed application properties, sequence number and enqueue time
annotations), so the adapter's mapping meets what it will meet in Azure. Sends go through the
real `ServiceBusPublisher` into a fake sender that records the real `ServiceBusMessage`s.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch, ServiceBusReceivedMessage
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._pyamqp.message import Header, Message, Properties
from azure.servicebus._pyamqp.types import TYPE, VALUE, AMQPTypes
from azure.servicebus.aio import ServiceBusReceiver
from azure.servicebus.exceptions import MessageLockLostError, ServiceBusConnectionError

from shared.adapters.dead_letters.servicebus_browser import (
    ServiceBusDeadLetterBrowser,
    create_service_bus_dead_letter_browser,
)
from shared.adapters.dead_letters.servicebus_messages import parse_service_bus_id
from shared.adapters.dead_letters.servicebus_receivers import service_bus_receiver_factory
from shared.adapters.dead_letters.servicebus_sink import MAX_DESCRIPTION_CHARS, ServiceBusDeadLetterSink
from shared.adapters.event_queue.servicebus_publisher import ServiceBusPublisher
from shared.domain.envelope import QueueMessage
from shared.ports import DeadLetter, DeadLetterSource, PortError, ReplayProgress
from shared.settings import SettingsError, load_settings

T0 = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


# --- the SDK at its lowest boundary ------------------------------------------------------


def received(
    sequence_number: int,
    *,
    message_id: str,
    enqueued_ms: int,
    delivery_count: int = 0,
    reason: str | None = None,
    description: str | None = None,
    body: bytes = b'{"schemaVersion": 1}',
) -> bytes:
    """The AMQP bytes of a stored message, as the broker would deliver them."""
    properties: dict[str | bytes, object] = {"tenantId": "acme", "schemaVersion": 1}
    if reason is not None:
        properties["DeadLetterReason"] = reason
    if description is not None:
        properties["DeadLetterErrorDescription"] = description
    message = Message(
        header=Header(delivery_count=delivery_count),
        message_annotations={
            b"x-opt-sequence-number": {TYPE: AMQPTypes.long, VALUE: sequence_number},
            b"x-opt-enqueued-time": {TYPE: AMQPTypes.timestamp, VALUE: enqueued_ms},
        },
        properties=Properties(
            message_id=message_id, content_type="application/json", subject="page_view", correlation_id="corr-1"
        ),
        application_properties=properties,
        data=[body],  # one AMQP data section
    )
    return bytes(encode_payload(bytearray(), message))


def ms(minutes: int) -> int:
    """T0 plus `minutes`, as an AMQP timestamp."""
    return int(T0.timestamp() * 1000) + minutes * 60_000


class FakeReceiver:
    """Stands in for a peek-lock `ServiceBusReceiver` on one queue.

    Messages are kept as AMQP bytes and decoded afresh for every peek and receive, as each
    broker round trip yields new message objects. Locks last until settled unless
    `locks_expire` (then every receive sees every message again, as if each lock lapsed).
    """

    def __init__(self, name: str, log: list[str], messages: Sequence[bytes] = ()) -> None:
        self.name = name
        self.log = log
        self.stored: dict[int, bytes] = {}
        for raw in messages:
            self.add(raw)
        self.locked: set[int] = set()
        self.locks_expire = False
        self.complete_error: Exception | None = None
        self.receive_calls = 0
        self.closed = False

    def add(self, raw: bytes) -> None:
        number = ServiceBusReceivedMessage.from_bytes(raw).sequence_number
        assert number is not None
        self.stored[number] = raw

    async def peek_messages(
        self,
        max_message_count: int = 1,
        *,
        sequence_number: int = 0,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK's signature
    ) -> list[ServiceBusReceivedMessage]:
        numbers = sorted(number for number in self.stored if number >= sequence_number)[:max_message_count]
        return [ServiceBusReceivedMessage.from_bytes(self.stored[number]) for number in numbers]

    async def receive_messages(
        self, max_message_count: int | None = 1, max_wait_time: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        self.receive_calls += 1
        if self.locks_expire:
            self.locked.clear()
        visible = [number for number in sorted(self.stored) if number not in self.locked][: max_message_count or 1]
        self.locked.update(visible)
        for number in visible:
            self.log.append(f"{self.name}: received {number}")
        return [ServiceBusReceivedMessage.from_bytes(self.stored[number]) for number in visible]

    async def complete_message(self, message: ServiceBusReceivedMessage) -> None:
        number = message.sequence_number
        if self.complete_error is not None:
            raise self.complete_error
        assert number in self.locked, f"completed {number} without holding its lock"
        del self.stored[number]
        self.locked.discard(number)
        self.log.append(f"{self.name}: completed {number}")

    async def abandon_message(self, message: ServiceBusReceivedMessage) -> None:
        self.locked.discard(message.sequence_number or 0)
        self.log.append(f"{self.name}: abandoned {message.sequence_number}")

    async def close(self) -> None:
        self.closed = True


class RecordingSender:
    """Stands in for the events queue's `ServiceBusSender`, behind the real publisher."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.sent: list[ServiceBusMessage] = []
        self.fail_next: Exception | None = None
        self.closed = False

    async def __aenter__(self) -> RecordingSender:
        return self

    async def create_message_batch(self) -> ServiceBusMessageBatch:
        return ServiceBusMessageBatch(max_size_in_bytes=256 * 1024)

    async def send_messages(
        self,
        message: ServiceBusMessageBatch,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK's signature
    ) -> None:
        if self.fail_next is not None:
            failure, self.fail_next = self.fail_next, None
            raise failure
        # The SDK keeps a batch's messages in `_messages` (no public accessor).
        for sent in batch_messages(message):
            self.sent.append(sent)
            self.log.append(f"sent {sent.message_id}")

    async def close(self) -> None:
        self.closed = True


def batch_messages(batch: ServiceBusMessageBatch) -> list[ServiceBusMessage]:
    return list(batch._messages)


class Broker:
    """Both dead-letter queues and the events queue, sharing one log of what happened in order."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.receivers: dict[DeadLetterSource, FakeReceiver] = {
            "dead-letter": FakeReceiver("dlq", self.log),
            "poison": FakeReceiver("poison", self.log),
        }
        self.sender = RecordingSender(self.log)

    def receiver(self, resources: AsyncExitStack, source: DeadLetterSource) -> FakeReceiver:
        return self.receivers[source]

    def browser(self, **options: int) -> ServiceBusDeadLetterBrowser:
        publisher = ServiceBusPublisher(lambda resources: self.sender, queue_name="events")
        return ServiceBusDeadLetterBrowser(
            self.receiver, publisher, events_queue="events", poison_queue="events-poison", **options
        )

    @property
    def dlq(self) -> FakeReceiver:
        return self.receivers["dead-letter"]

    @property
    def poison(self) -> FakeReceiver:
        return self.receivers["poison"]


@pytest.fixture
def broker() -> Broker:
    broker = Broker()
    for number in (5, 6, 7):
        broker.dlq.add(
            received(
                number,
                message_id=f"dl-{number}",
                enqueued_ms=ms(number),
                delivery_count=10,
                reason="MaxDeliveryCountExceeded",
                description="Message could not be consumed after 10 delivery attempts.",
            )
        )
    broker.poison.add(
        received(
            1,
            message_id="p-1",
            enqueued_ms=ms(6) + 1,
            reason="SchemaInvalid",
            description="event.tenantId: Field required",
            body=b'{"schemaVersion": 1, "event": {}}',
        )
    )
    return broker


# --- the sink --------------------------------------------------------------------------


async def test_the_sink_sends_the_original_message_with_the_reason_properties() -> None:
    log: list[str] = []
    sender = RecordingSender(log)
    sink = ServiceBusDeadLetterSink(
        ServiceBusPublisher(lambda resources: sender, queue_name="events-poison"), queue_name="events-poison"
    )
    original = QueueMessage(
        message_id="evt-1",
        body=b"not json",
        subject="page_view",
        correlation_id="corr-9",
        application_properties={"tenantId": "acme", "schemaVersion": 1},
    )

    await sink.dead_letter(original, "UndecodableMessage", "the body is not JSON")

    [sent] = sender.sent
    assert isinstance(sent, ServiceBusMessage)
    assert sent.message_id == "evt-1", "the same id, so the poison queue's duplicate detection drops a re-park"
    assert b"".join(sent.body) == b"not json"
    assert (sent.content_type, sent.subject, sent.correlation_id) == ("application/json", "page_view", "corr-9")
    assert sent.application_properties == {
        "tenantId": "acme",
        "schemaVersion": 1,
        "DeadLetterReason": "UndecodableMessage",
        "DeadLetterErrorDescription": "the body is not JSON",
    }
    assert original.application_properties == {"tenantId": "acme", "schemaVersion": 1}, "the input was changed"


async def test_the_sink_caps_the_description_like_service_bus() -> None:
    sender = RecordingSender([])
    sink = ServiceBusDeadLetterSink(ServiceBusPublisher(lambda resources: sender, queue_name="events-poison"))

    await sink.dead_letter(QueueMessage(message_id="evt-1", body=b"{}"), "SchemaInvalid", "x" * 10_000)

    [sent] = sender.sent
    assert sent.application_properties is not None
    assert sent.application_properties["DeadLetterErrorDescription"] == "x" * MAX_DESCRIPTION_CHARS


async def test_a_failed_park_is_a_port_error_naming_the_message() -> None:
    sender = RecordingSender([])
    failure = ServiceBusConnectionError(message="link detached")
    sender.fail_next = failure
    sink = ServiceBusDeadLetterSink(
        ServiceBusPublisher(lambda resources: sender, queue_name="events-poison"), queue_name="events-poison"
    )

    with pytest.raises(PortError, match=r"'evt-1'.*'events-poison'.*link detached") as caught:
        await sink.dead_letter(QueueMessage(message_id="evt-1", body=b"{}"), "SchemaInvalid", "bad")

    assert caught.value.__cause__ is not None
    assert caught.value.__cause__.__cause__ is failure


async def test_closing_the_sink_closes_its_sender() -> None:
    sender = RecordingSender([])
    sink = ServiceBusDeadLetterSink(ServiceBusPublisher(lambda resources: sender, queue_name="events-poison"))
    await sink.dead_letter(QueueMessage(message_id="evt-1", body=b"{}"), "SchemaInvalid", "bad")

    await sink.close()

    assert sender.closed


# --- listing and showing -------------------------------------------------------------------


async def test_list_reads_both_queues_oldest_first_without_locking(broker: Broker) -> None:
    browser = broker.browser()

    dead_letters = await browser.list(10)

    assert [d.id for d in dead_letters] == ["dlq-5", "dlq-6", "poison-1", "dlq-7"]
    assert broker.log == [], "listing must not receive, lock or settle anything"
    assert broker.dlq.receive_calls == broker.poison.receive_calls == 0


async def test_a_broker_dead_letter_is_mapped_with_its_reason_and_counts(broker: Broker) -> None:
    dead = await broker.browser().get("dlq-6")

    assert dead is not None
    assert (dead.id, dead.source, dead.message_id) == ("dlq-6", "dead-letter", "dl-6")
    assert dead.reason == "MaxDeliveryCountExceeded"
    assert dead.description == "Message could not be consumed after 10 delivery attempts."
    assert dead.delivery_count == 10
    assert dead.enqueued_at == datetime(2026, 1, 31, 12, 6, tzinfo=UTC)
    assert dead.dead_lettered_at is None, "Service Bus does not record when"
    assert dead.body == b'{"schemaVersion": 1}'
    # Received properties arrive bytes-keyed; the reason ones are not part of the message.
    assert dead.message.application_properties == {"tenantId": "acme", "schemaVersion": 1}
    assert (dead.message.subject, dead.message.correlation_id) == ("page_view", "corr-1")


async def test_a_poison_message_is_dated_by_when_it_was_parked(broker: Broker) -> None:
    dead = await broker.browser().get("poison-1")

    assert dead is not None
    assert (dead.source, dead.reason, dead.description) == ("poison", "SchemaInvalid", "event.tenantId: Field required")
    assert dead.dead_lettered_at == datetime(2026, 1, 31, 12, 6, 0, 1000, tzinfo=UTC)
    assert dead.enqueued_at is None
    assert dead.delivery_count is None, "the poison copy's own count says nothing about the original"


async def test_list_stops_at_the_limit_paging_through_peeks(broker: Broker) -> None:
    for number in range(8, 30):
        broker.dlq.add(received(number, message_id=f"dl-{number}", enqueued_ms=ms(number)))

    dead_letters = await broker.browser(peek_page=4).list(12)

    assert len(dead_letters) == 12
    assert [d.id for d in dead_letters][:4] == ["dlq-5", "dlq-6", "poison-1", "dlq-7"]


@pytest.mark.parametrize("unknown", ["dlq-1", "dlq-99", "poison-5", "5", "dlq-", "dlq-x", "other-5", ""])
async def test_get_of_an_unknown_id_is_none(broker: Broker, unknown: str) -> None:
    assert await broker.browser().get(unknown) is None


def test_ids_name_the_queue_and_the_sequence_number() -> None:
    assert parse_service_bus_id("dlq-42") == ("dead-letter", 42)
    assert parse_service_bus_id(" POISON-7 ") == ("poison", 7)
    assert parse_service_bus_id("42") is None


# --- replaying -----------------------------------------------------------------------------


async def test_replay_sends_each_selected_message_before_completing_it(broker: Broker) -> None:
    browser = broker.browser()
    progress: list[ReplayProgress] = []

    result = await browser.replay(["dlq-6", "poison-1"], progress.append)

    assert [d.id for d in result.replayed] == ["dlq-6", "poison-1"]
    assert result.not_found == ()
    assert broker.log.index("sent dl-6:replay:dlq-6") < broker.log.index("dlq: completed 6")
    assert broker.log.index("sent p-1:replay:poison-1") < broker.log.index("poison: completed 1")
    assert sorted(broker.dlq.stored) == [5, 7], "only the selected message left the dead-letter queue"
    assert broker.poison.stored == {}
    assert [(p.done, p.total) for p in progress] == [(0, 2), (1, 2), (2, 2)]


async def test_a_replayed_message_gets_an_id_of_its_own_and_loses_the_reason(broker: Broker) -> None:
    await broker.browser().replay(["poison-1"])

    [sent] = broker.sender.sent
    assert isinstance(sent, ServiceBusMessage)
    # Not the original id, which the events queue's duplicate detection may still remember
    # (it would drop the replay silently); fixed per dead letter, so a retried replay is dropped.
    assert sent.message_id == "p-1:replay:poison-1"
    assert b"".join(sent.body) == b'{"schemaVersion": 1, "event": {}}'
    assert sent.application_properties == {"tenantId": "acme", "schemaVersion": 1, "ReplayOf": "p-1"}
    assert (sent.subject, sent.correlation_id, sent.content_type) == ("page_view", "corr-1", "application/json")


async def test_messages_received_on_the_way_are_abandoned_not_replayed(broker: Broker) -> None:
    await broker.browser().replay(["dlq-7"])

    assert [entry for entry in broker.log if entry.startswith("sent")] == ["sent dl-7:replay:dlq-7"]
    assert "dlq: abandoned 5" in broker.log
    assert "dlq: abandoned 6" in broker.log
    assert broker.dlq.locked == set(), "every lock taken was released"
    assert sorted(broker.dlq.stored) == [5, 6]


async def test_a_failed_send_leaves_the_message_in_the_dead_letter_queue(broker: Broker) -> None:
    broker.sender.fail_next = ServiceBusConnectionError(message="events queue unreachable")

    with pytest.raises(PortError, match=r"dlq-5.*'dl-5'.*stays in 'events/\$DeadLetterQueue'"):
        await broker.browser().replay(["dlq-5", "dlq-6"])

    assert not any("completed" in entry for entry in broker.log)
    assert sorted(broker.dlq.stored) == [5, 6, 7]
    assert broker.dlq.locked == set(), "the failed message and the others were released"


async def test_a_failed_completion_after_the_send_says_replaying_again_is_harmless(broker: Broker) -> None:
    broker.dlq.complete_error = MessageLockLostError(message="lock lost")

    with pytest.raises(PortError, match="harmless"):
        await broker.browser().replay(["dlq-5"])

    assert "sent dl-5:replay:dlq-5" in broker.log
    assert 5 in broker.dlq.stored


async def test_replay_all_takes_what_is_there_when_it_starts(broker: Broker) -> None:
    browser = broker.browser()
    late = received(8, message_id="dl-8", enqueued_ms=ms(8))

    def dead_letter_arrives(step: ReplayProgress) -> None:
        if step.done == 1:
            broker.dlq.add(late)

    result = await browser.replay(None, dead_letter_arrives)

    assert sorted(d.id for d in result.replayed) == ["dlq-5", "dlq-6", "dlq-7", "poison-1"]
    assert sorted(entry for entry in broker.log if entry.startswith("sent")) == [
        "sent dl-5:replay:dlq-5",
        "sent dl-6:replay:dlq-6",
        "sent dl-7:replay:dlq-7",
        "sent p-1:replay:poison-1",
    ]
    assert list(broker.dlq.stored) == [8], "a message dead-lettered during the replay waits for the next one"


async def test_unknown_ids_are_reported_without_receiving_anything(broker: Broker) -> None:
    result = await broker.browser().replay(["dlq-99", "nonsense"])

    assert result.replayed == ()
    assert result.not_found == ("dlq-99", "nonsense")
    assert broker.dlq.receive_calls == 0, "a wrong id must not cost a pass over the queue"


async def test_a_message_replayed_meanwhile_is_not_found_and_the_pass_ends(broker: Broker) -> None:
    browser = broker.browser()
    target = await browser.get("dlq-6")
    assert isinstance(target, DeadLetter)

    original_receive = broker.dlq.receive_messages

    async def someone_else_replays_it_first(
        max_message_count: int | None = 1, max_wait_time: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        broker.dlq.stored.pop(6, None)
        return await original_receive(max_message_count, max_wait_time)

    broker.dlq.receive_messages = someone_else_replays_it_first  # type: ignore[method-assign]

    result = await browser.replay(["dlq-6"])

    assert result.not_found == ("dlq-6",)
    assert broker.sender.sent == []
    assert broker.dlq.locked == set()


async def test_locks_expiring_before_the_pass_ends_stop_it_with_a_clear_error(broker: Broker) -> None:
    # Every lock lapses at once: each receive hands back the oldest message again, so a
    # pass that went on receiving would never reach dlq-6.
    broker.dlq.locks_expire = True

    with pytest.raises(PortError, match=r"locks .* expired before the replay reached dlq-6; nothing was lost"):
        await broker.browser(receive_batch=1).replay(["dlq-6"])

    assert broker.dlq.receive_calls == 2
    assert broker.sender.sent == []
    assert sorted(broker.dlq.stored) == [5, 6, 7]


# --- removing ------------------------------------------------------------------------------


async def test_remove_completes_the_selected_messages_without_sending_them(broker: Broker) -> None:
    removed = await broker.browser().remove(["dlq-6", "poison-1", "dlq-99", "nonsense", "dlq-6"])

    assert removed == 2
    assert sorted(broker.dlq.stored) == [5, 7]
    assert broker.poison.stored == {}
    assert broker.sender.sent == [], "a removed message goes nowhere"
    assert "dlq: completed 6" in broker.log
    assert "dlq: abandoned 5" in broker.log, "the message in front was received on the way, then released"
    assert broker.dlq.locked == broker.poison.locked == set()


async def test_removing_unknown_ids_receives_nothing(broker: Broker) -> None:
    assert await broker.browser().remove(["dlq-99", "poison-5", "5", ""]) == 0

    assert broker.dlq.receive_calls == broker.poison.receive_calls == 0
    assert sorted(broker.dlq.stored) == [5, 6, 7]


async def test_removing_again_removes_nothing(broker: Broker) -> None:
    browser = broker.browser()
    assert await browser.remove(["dlq-5", "dlq-7"]) == 2

    assert await browser.remove(["dlq-5", "dlq-7"]) == 0
    assert [d.id for d in await browser.list(10)] == ["dlq-6", "poison-1"]


@pytest.mark.parametrize("operation", ["remove", "replay"])
async def test_a_pass_ends_once_it_is_past_the_wanted_message_while_new_ones_keep_arriving(
    broker: Broker, operation: str
) -> None:
    # GIVEN dlq-6, which the pass looks for, goes after the peek found it; and every receive
    # brings one more dead letter, newer than any wanted
    browser = broker.browser(receive_batch=1)
    original_receive = broker.dlq.receive_messages

    async def busy_dead_letter_queue(
        max_message_count: int | None = 1, max_wait_time: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        broker.dlq.stored.pop(6, None)
        assert broker.dlq.receive_calls < 20, "the pass kept receiving new arrivals"
        newest = max(broker.dlq.stored) + 1
        broker.dlq.add(received(newest, message_id=f"dl-{newest}", enqueued_ms=ms(newest)))
        return await original_receive(max_message_count, max_wait_time)

    broker.dlq.receive_messages = busy_dead_letter_queue  # type: ignore[method-assign]

    # WHEN it is removed or replayed
    if operation == "remove":
        assert await browser.remove(["dlq-6"]) == 0
    else:
        assert (await browser.replay(["dlq-6"])).not_found == ("dlq-6",)

    # THEN the pass stopped at the first message past it, and released all it held
    assert broker.dlq.receive_calls == 2, "5, then 7: past 6"
    assert broker.sender.sent == []
    assert broker.dlq.locked == set()


async def test_a_failed_removal_is_a_port_error_and_the_message_stays(broker: Broker) -> None:
    broker.dlq.complete_error = MessageLockLostError(message="lock lost")

    with pytest.raises(PortError, match=r"remove dlq-5 from 'events/\$DeadLetterQueue'; it is still there"):
        await broker.browser().remove(["dlq-5"])

    assert sorted(broker.dlq.stored) == [5, 6, 7]
    assert broker.dlq.locked == set()


async def test_locks_expiring_before_a_removal_reaches_its_message_stop_it_with_a_clear_error(broker: Broker) -> None:
    broker.dlq.locks_expire = True

    with pytest.raises(PortError, match=r"expired before the removal reached dlq-6; nothing was lost: remove those"):
        await broker.browser(receive_batch=1).remove(["dlq-6"])

    assert sorted(broker.dlq.stored) == [5, 6, 7]


async def test_close_closes_receivers_and_the_publisher(broker: Broker) -> None:
    browser = broker.browser()
    await browser.replay(["poison-1"])

    await browser.close()

    assert broker.dlq.closed is False, "never opened"
    assert broker.poison.closed
    assert broker.sender.closed


# --- the real SDK objects --------------------------------------------------------------


async def test_the_real_factory_builds_unconnected_peek_lock_receivers_for_both_queues() -> None:
    settings = load_settings(
        {
            "ServiceBusConnection": "Endpoint=sb://cs-conn.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=dg==",
            "CLOUDSCALE_EVENTS_QUEUE": "ingest-events",
            "CLOUDSCALE_POISON_QUEUE": "ingest-poison",
        }
    )
    factory = service_bus_receiver_factory(settings)

    async with AsyncExitStack() as resources:
        dead_letters = factory(resources, "dead-letter")
        poison = factory(resources, "poison")
        resources.push_async_callback(dead_letters.close)
        resources.push_async_callback(poison.close)

        assert isinstance(dead_letters, ServiceBusReceiver)
        assert isinstance(poison, ServiceBusReceiver)
        assert dead_letters.entity_path == "ingest-events/$DeadLetterQueue"
        assert poison.entity_path == "ingest-poison"
        assert dead_letters.fully_qualified_namespace == "cs-conn.servicebus.windows.net"


async def test_the_browser_connects_nothing_and_closes_cleanly_unused() -> None:
    settings = load_settings({"ServiceBusConnection__fullyQualifiedNamespace": "cs-test.servicebus.windows.net"})

    browser = create_service_bus_dead_letter_browser(settings)
    await browser.close()


def test_the_browser_needs_a_namespace_or_connection_string() -> None:
    with pytest.raises(SettingsError, match="ServiceBusConnection__fullyQualifiedNamespace"):
        create_service_bus_dead_letter_browser(load_settings({}))
