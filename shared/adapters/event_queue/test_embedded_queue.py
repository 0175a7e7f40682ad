"""The embedded queue on a real SQLite file: peek-lock, redelivery, dead-lettering, durability."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.adapters.event_queue.embedded_publisher import EmbeddedPublisher
from shared.adapters.event_queue.embedded_queue import (
    EmbeddedQueue,
    MessageLockLostError,
    MessageStillQueuedError,
)
from shared.domain.dead_letter_reasons import MAX_DELIVERY_COUNT_EXCEEDED
from shared.domain.envelope import Envelope, QueueMessage, to_queue_message
from shared.domain.events import Event
from shared.ports import PublishError

REPO = Path(__file__).resolve().parents[3]


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_queue(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., EmbeddedQueue]]:
    opened: list[EmbeddedQueue] = []

    def make(**kwargs: object) -> EmbeddedQueue:
        options: dict[str, object] = {"lock_seconds": 30.0, "max_delivery_count": 3, "clock": clock, **kwargs}
        queue = EmbeddedQueue(tmp_path / "queue.sqlite3", **options)  # type: ignore[arg-type]
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        queue.close()


def message(n: int, **overrides: object) -> QueueMessage:
    fields: dict[str, object] = {
        "message_id": f"id-{n}",
        "body": f'{{"n": {n}}}'.encode(),
        "subject": "page_view",
        "correlation_id": f"corr-{n}",
        "application_properties": {"tenantId": "acme", "schemaVersion": 1},
        **overrides,
    }
    return QueueMessage(**fields)  # type: ignore[arg-type]


async def test_a_sent_message_is_received_locked_with_its_properties(make_queue: Callable[..., EmbeddedQueue]) -> None:
    queue = make_queue()
    await queue.send([message(1)])

    [received] = await queue.receive(10)

    assert received.message == message(1)
    assert received.delivery_count == 1
    assert received.lock_token
    assert await queue.receive(10) == []  # locked: invisible to other receivers
    assert await queue.depth() == 1


async def test_messages_come_out_in_the_order_they_went_in(make_queue: Callable[..., EmbeddedQueue]) -> None:
    queue = make_queue()
    await queue.send([message(n) for n in range(5)])
    await queue.send([message(n) for n in range(5, 8)])

    received = await queue.receive(8)

    assert [r.message.message_id for r in received] == [f"id-{n}" for n in range(8)]


async def test_complete_removes_the_message(make_queue: Callable[..., EmbeddedQueue]) -> None:
    queue = make_queue()
    await queue.send([message(1)])
    [received] = await queue.receive()

    await queue.complete(received.lock_token)

    assert await queue.depth() == 0
    with pytest.raises(MessageLockLostError):
        await queue.complete(received.lock_token)


async def test_an_expired_lock_redelivers_and_the_old_token_is_void(
    make_queue: Callable[..., EmbeddedQueue], clock: FakeClock
) -> None:
    queue = make_queue()
    await queue.send([message(1)])
    [first] = await queue.receive()

    clock.advance(30.0)
    [second] = await queue.receive()

    assert second.message.message_id == "id-1"
    assert second.delivery_count == 2
    with pytest.raises(MessageLockLostError):
        await queue.complete(first.lock_token)
    await queue.complete(second.lock_token)
    assert await queue.depth() == 0


async def test_renewing_a_lock_keeps_the_message_invisible(
    make_queue: Callable[..., EmbeddedQueue], clock: FakeClock
) -> None:
    queue = make_queue()
    await queue.send([message(1)])
    [received] = await queue.receive()

    clock.advance(20.0)
    await queue.renew_lock(received.lock_token)
    clock.advance(20.0)

    assert await queue.receive() == []
    await queue.complete(received.lock_token)


async def test_abandon_makes_the_message_visible_at_once(make_queue: Callable[..., EmbeddedQueue]) -> None:
    queue = make_queue()
    await queue.send([message(1)])
    [first] = await queue.receive()

    await queue.abandon(first.lock_token)
    [again] = await queue.receive()

    assert again.delivery_count == 2


async def test_after_the_maximum_deliveries_the_message_is_dead_lettered(
    make_queue: Callable[..., EmbeddedQueue],
) -> None:
    queue = make_queue(max_delivery_count=3)
    await queue.send([message(1), message(2)])

    for _ in range(3):
        received = await queue.receive(1)
        assert [r.message.message_id for r in received] == ["id-1"]
        await queue.abandon(received[0].lock_token)
    received = await queue.receive(1)

    assert [r.message.message_id for r in received] == ["id-2"]  # id-1 went to the dead-letter queue
    [dead] = await queue.dead_letters()
    assert dead.message == message(1)
    assert dead.reason == MAX_DELIVERY_COUNT_EXCEEDED
    assert dead.delivery_count == 3
    assert await queue.dead_letter_depth() == 1


async def test_dead_letter_keeps_the_reason_given(make_queue: Callable[..., EmbeddedQueue]) -> None:
    queue = make_queue()
    await queue.send([message(1)])
    [received] = await queue.receive()

    await queue.dead_letter(received.lock_token, "SchemaInvalid", "eventType missing")

    assert await queue.depth() == 0
    [dead] = await queue.dead_letters()
    assert (dead.reason, dead.description) == ("SchemaInvalid", "eventType missing")


async def test_a_message_id_already_waiting_is_dropped_like_duplicate_detection(
    make_queue: Callable[..., EmbeddedQueue],
) -> None:
    queue = make_queue()
    await queue.send([message(1)])
    await queue.send([message(1, body=b'{"resent": true}'), message(2)])

    received = await queue.receive(10)

    assert [(r.message.message_id, r.message.body) for r in received] == [("id-1", b'{"n": 1}'), ("id-2", b'{"n": 2}')]


def tenant_event(tenant: str, event_id: str) -> QueueMessage:
    """The queue message ingest makes for `tenant`'s event `event_id`."""
    event = Event.model_validate({"eventType": "page_view", "tenantId": tenant, "eventId": event_id})
    envelope = Envelope.model_validate(
        {
            "event": event,
            "receivedAt": "2026-03-01T10:00:00Z",
            "clientNetwork": "203.0.113.0/24",
            "clientKey": "a-client-key",
            "ipRequestsLastMinute": 0,
        }
    )
    return to_queue_message(envelope)


async def test_two_tenants_events_with_one_event_id_are_not_duplicates(
    make_queue: Callable[..., EmbeddedQueue],
) -> None:
    # Duplicate detection drops a resend of one tenant's event, never another tenant's event.
    queue = make_queue()
    event_id = "1f0c2b8e-6d3a-4c1e-9b7f-2a5d8e4c6b10"
    await queue.send([tenant_event("acme", event_id)])
    await queue.send([tenant_event("globex", event_id), tenant_event("acme", event_id)])

    received = await queue.receive(10)

    tenants = [Envelope.model_validate_json(r.message.body).event.tenant_id for r in received]
    assert tenants == ["acme", "globex"]


async def test_concurrent_sends_are_all_committed(make_queue: Callable[..., EmbeddedQueue]) -> None:
    queue = make_queue()

    await asyncio.gather(*(queue.send([message(n)]) for n in range(300)))

    assert await queue.depth() == 300
    assert queue.read_depth() == 300


def test_messages_survive_a_killed_process(tmp_path: Path) -> None:
    # GIVEN a separate process that sends messages and reports once send() returned
    script = textwrap.dedent(
        """
        import asyncio, sys, time
        from pathlib import Path
        from shared.adapters.event_queue.embedded_queue import EmbeddedQueue
        from shared.domain.envelope import QueueMessage

        async def main():
            queue = EmbeddedQueue(Path(sys.argv[1]))
            await queue.send([QueueMessage(message_id=f"m{n}", body=b"{}") for n in range(50)])
            print("sent", flush=True)
            time.sleep(60)

        asyncio.run(main())
        """
    )
    path = tmp_path / "queue.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "sent"

    # WHEN it is killed without any chance to clean up
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    child.stdout.close()

    # THEN a new process finds every acknowledged message
    queue = EmbeddedQueue(path)
    try:
        received = asyncio.run(queue.receive(100))
        assert sorted(r.message.message_id for r in received) == sorted(f"m{n}" for n in range(50))
    finally:
        queue.close()


async def test_the_publisher_reports_a_closed_queue_as_a_publish_error(
    make_queue: Callable[..., EmbeddedQueue],
) -> None:
    publisher = EmbeddedPublisher(make_queue())
    await publisher.close()

    with pytest.raises(PublishError):
        await publisher.publish([message(1)])
    with pytest.raises(PublishError):
        await publisher.check()


async def test_a_parked_copy_keeps_the_sequence_number_and_parking_twice_does_not_double_it(
    make_queue: Callable[..., EmbeddedQueue],
) -> None:
    queue = make_queue()
    await queue.send([message(1)])
    [received] = await queue.receive(1)

    # The process stage parks the poison delivery twice (a crash before the completion).
    await queue.park(received.message, "SchemaInvalid", "event.tenantId: Field required")
    await queue.park(received.message, "SchemaInvalid", "event.tenantId: Field required")
    await queue.complete(received.lock_token)

    [parked] = await queue.dead_letters()
    assert parked.sequence_number == received.sequence_number
    assert (parked.reason, parked.description) == ("SchemaInvalid", "event.tenantId: Field required")
    assert parked.message == message(1)
    assert await queue.depth() == 0


async def test_a_message_not_in_the_queue_is_parked_under_a_fresh_sequence_number(
    make_queue: Callable[..., EmbeddedQueue],
) -> None:
    queue = make_queue()
    await queue.send([message(1)])
    await queue.park(message(2), "UndecodableMessage", "not JSON")

    parked = await queue.dead_letters()
    assert [p.message.message_id for p in parked] == ["id-2"]
    [waiting] = await queue.peek()
    assert parked[0].sequence_number != (await queue.receive(1))[0].sequence_number
    assert waiting.message_id == "id-1"


async def test_a_dead_letter_is_not_replayed_into_its_own_delivery(make_queue: Callable[..., EmbeddedQueue]) -> None:
    # GIVEN a poison delivery parked but not yet completed by its host
    queue = make_queue()
    await queue.send([message(1)])
    [received] = await queue.receive(1)
    await queue.park(received.message, "SchemaInvalid", "bad")
    [parked] = await queue.dead_letters()

    # WHEN someone replays it in that moment THEN the replay is refused and the dead letter kept
    with pytest.raises(MessageStillQueuedError, match="still in the queue"):
        await queue.resubmit(parked.sequence_number)
    await queue.complete(received.lock_token)
    assert len(await queue.dead_letters()) == 1

    # AND once the delivery is completed the replay goes through, with a fresh delivery count
    assert await queue.resubmit(parked.sequence_number) is True
    assert await queue.dead_letters() == []
    [again] = await queue.receive(1)
    assert again.message == message(1)
    assert again.delivery_count == 1
    assert await queue.resubmit(parked.sequence_number) is False
