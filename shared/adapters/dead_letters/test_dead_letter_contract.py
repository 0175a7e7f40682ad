"""The dead-letter contract, run against both adapters: the embedded queue, and Service Bus.

One path through both ports, as an operator meets it: the process stage parks a message
(`DeadLetterSink`), `cloudscale dlq` lists, shows and replays it (`DeadLetterBrowser`), and the
replay lands on the events queue; an erasure removes a data subject's dead letters.

There is no Service Bus broker here, so the Service Bus side is faked at the SDK's lowest
boundary, as in `test_servicebus_dead_letters`: the real sink, browser and publisher build real
`azure.servicebus` messages; a fake sender records what the sink sends to the poison queue, a
`Broker` stores it there as the AMQP bytes a broker would deliver (sequence number and enqueue
time stamped), and fake peek-lock receivers hand those back. The embedded side is real: one
SQLite queue file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._pyamqp.message import Header, Message, Properties
from azure.servicebus._pyamqp.types import TYPE, VALUE, AMQPTypes

from shared.adapters.dead_letters.embedded import EmbeddedDeadLetterBrowser, EmbeddedDeadLetterSink
from shared.adapters.dead_letters.servicebus_browser import ServiceBusDeadLetterBrowser
from shared.adapters.dead_letters.servicebus_sink import ServiceBusDeadLetterSink
from shared.adapters.dead_letters.test_servicebus_dead_letters import T0, Broker, RecordingSender
from shared.adapters.event_queue.embedded_queue import EmbeddedQueue
from shared.adapters.event_queue.servicebus_publisher import ServiceBusPublisher
from shared.adapters.event_queue.test_servicebus_publisher import as_queue_message
from shared.dead_letter_erasure import erase_subject_dead_letters
from shared.domain.dead_letter_reasons import POISON_REASONS, SCHEMA_INVALID, UNDECODABLE
from shared.domain.envelope import QueueMessage
from shared.domain.privacy import Subject
from shared.ports import DeadLetterBrowser, DeadLetterSink


@dataclass
class DeadLetters:
    """Both ports of one backend, and what its events queue holds (the replays land there)."""

    sink: DeadLetterSink
    browser: DeadLetterBrowser
    events: Callable[[], Awaitable[list[QueueMessage]]]
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def as_delivered(message: ServiceBusMessage, sequence_number: int) -> bytes:
    """What a broker stores for a sent message and delivers back: its fields, plus its numbering."""
    delivered = Message(
        header=Header(delivery_count=0),
        message_annotations={
            b"x-opt-sequence-number": {TYPE: AMQPTypes.long, VALUE: sequence_number},
            b"x-opt-enqueued-time": {
                TYPE: AMQPTypes.timestamp,
                VALUE: int(T0.timestamp() * 1000) + sequence_number * 1000,
            },
        },
        properties=Properties(
            message_id=message.message_id,
            content_type=message.content_type,
            subject=message.subject,
            correlation_id=message.correlation_id,
        ),
        application_properties=dict(message.application_properties or {}),
        data=[b"".join(message.body)],
    )
    return bytes(encode_payload(bytearray(), delivered))


class PoisonQueue(RecordingSender):
    """The sink's sender: what it sends is stored in the broker's poison queue, numbered."""

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker.log)
        self.broker = broker

    async def send_messages(self, message: object, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        before = len(self.sent)
        await super().send_messages(message, timeout=timeout)  # type: ignore[arg-type]
        for sent in self.sent[before:]:
            self.broker.poison.add(as_delivered(sent, sequence_number=len(self.broker.poison.stored) + 1))


@pytest.fixture(params=["embedded", "servicebus"])
async def dead_letters(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DeadLetters]:
    if request.param == "embedded":
        queue = EmbeddedQueue(tmp_path / "queue.sqlite3")

        async def waiting() -> list[QueueMessage]:
            return await queue.peek(100)

        backend = DeadLetters(EmbeddedDeadLetterSink(queue), EmbeddedDeadLetterBrowser(queue), waiting)
    else:
        broker = Broker()
        poison = PoisonQueue(broker)
        sink = ServiceBusDeadLetterSink(
            ServiceBusPublisher(lambda resources: poison, queue_name="events-poison"), queue_name="events-poison"
        )
        browser: ServiceBusDeadLetterBrowser = broker.browser(receive_wait_seconds=0)

        async def replayed() -> list[QueueMessage]:
            return [as_queue_message(sent) for sent in broker.sender.sent]

        backend = DeadLetters(sink, browser, replayed)
    yield backend
    await backend.sink.close()
    await backend.browser.close()


def poison(message_id: str, body: bytes = b"not json") -> QueueMessage:
    return QueueMessage(
        message_id=message_id,
        body=body,
        subject="page_view",
        correlation_id=f"corr-{message_id}",
        application_properties={"tenantId": "acme", "schemaVersion": 2},
    )


async def test_a_parked_message_is_listed_with_its_reason_and_as_it_was_sent(dead_letters: DeadLetters) -> None:
    original = poison("evt-1")

    await dead_letters.sink.dead_letter(original, UNDECODABLE, "the body is not JSON")

    [listed] = await dead_letters.browser.list(10)
    assert (listed.reason, listed.description) == (UNDECODABLE, "the body is not JSON")
    assert listed.reason in POISON_REASONS
    assert listed.message == original, "the reason travels beside the message, not in it"
    assert await dead_letters.browser.get(listed.id) == listed


async def test_dead_letters_are_listed_oldest_first_up_to_the_limit(dead_letters: DeadLetters) -> None:
    for number in range(1, 4):
        await dead_letters.sink.dead_letter(poison(f"evt-{number}"), SCHEMA_INVALID, f"field {number}")

    assert [d.message_id for d in await dead_letters.browser.list(10)] == ["evt-1", "evt-2", "evt-3"]
    assert [d.message_id for d in await dead_letters.browser.list(2)] == ["evt-1", "evt-2"]


async def test_an_unknown_or_malformed_id_is_simply_not_found(dead_letters: DeadLetters) -> None:
    await dead_letters.sink.dead_letter(poison("evt-1"), SCHEMA_INVALID, "bad")

    for unknown in ("999", "dlq-999", "poison-999", "not an id", ""):
        assert await dead_letters.browser.get(unknown) is None


async def test_a_replay_puts_the_message_back_on_the_events_queue_and_removes_the_dead_letter(
    dead_letters: DeadLetters,
) -> None:
    # GIVEN two parked messages
    await dead_letters.sink.dead_letter(poison("evt-1", b'{"n": 1}'), SCHEMA_INVALID, "bad")
    await dead_letters.sink.dead_letter(poison("evt-2", b'{"n": 2}'), SCHEMA_INVALID, "bad")
    first, second = await dead_letters.browser.list(10)
    progress: list[tuple[int, int]] = []

    # WHEN the first is replayed, with a mistyped id beside it
    result = await dead_letters.browser.replay(
        [first.id, "nope"], lambda report: progress.append((report.done, report.total))
    )

    # THEN it is on the events queue, with its body and properties, under an id that says so
    assert [d.id for d in result.replayed] == [first.id]
    assert result.not_found == ("nope",)
    [on_queue] = await dead_letters.events()
    assert on_queue.message_id.startswith("evt-1")
    assert on_queue.body == b'{"n": 1}'
    assert {k: v for k, v in on_queue.application_properties.items() if k != "ReplayOf"} == {
        "tenantId": "acme",
        "schemaVersion": 2,
    }
    # AND only the other is left, and the replayed one is not found again
    assert [d.id for d in await dead_letters.browser.list(10)] == [second.id]
    assert await dead_letters.browser.get(first.id) is None
    assert progress[0][0] == 0
    assert progress[-1][0] == 1


async def test_replaying_all_replays_what_is_there(dead_letters: DeadLetters) -> None:
    for number in range(1, 4):
        await dead_letters.sink.dead_letter(poison(f"evt-{number}"), SCHEMA_INVALID, "bad")

    result = await dead_letters.browser.replay(None)

    assert len(result.replayed) == 3
    assert await dead_letters.browser.list(10) == []
    assert sorted(m.message_id.split(":")[0] for m in await dead_letters.events()) == ["evt-1", "evt-2", "evt-3"]


async def test_removed_dead_letters_are_gone_and_the_others_stay(dead_letters: DeadLetters) -> None:
    # GIVEN three parked messages
    for number in range(1, 4):
        await dead_letters.sink.dead_letter(poison(f"evt-{number}"), SCHEMA_INVALID, "bad")
    first, second, third = await dead_letters.browser.list(10)

    # WHEN two are removed, with a mistyped id beside them
    removed = await dead_letters.browser.remove([first.id, third.id, "nope"])

    # THEN only the other is left, nothing went to the events queue, and removing again is a no-op
    assert removed == 2
    assert await dead_letters.browser.list(10) == [second]
    assert await dead_letters.browser.get(first.id) is None
    assert await dead_letters.events() == []
    assert await dead_letters.browser.remove([first.id, third.id]) == 0
    assert await dead_letters.browser.remove([]) == 0
    # AND the one left replays as before
    result = await dead_letters.browser.replay(None)
    assert [d.id for d in result.replayed] == [second.id]


async def test_an_erasure_removes_the_subjects_dead_letters_only(dead_letters: DeadLetters) -> None:
    def of_user(message_id: str, user_id: str) -> QueueMessage:
        return poison(message_id, b'{"event": {"tenantId": "acme", "userId": "%s"}}' % user_id.encode())

    await dead_letters.sink.dead_letter(of_user("evt-1", "user-u"), SCHEMA_INVALID, "bad")
    await dead_letters.sink.dead_letter(of_user("evt-2", "user-v"), SCHEMA_INVALID, "bad")
    await dead_letters.sink.dead_letter(of_user("evt-3", "user-u"), SCHEMA_INVALID, "bad")

    assert await erase_subject_dead_letters(dead_letters.browser, Subject("acme", "userId", "user-u")) == (2, 2)

    assert [d.message_id for d in await dead_letters.browser.list(10)] == ["evt-2"]
