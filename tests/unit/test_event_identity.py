"""An event is (tenantId, eventId): the queue message id and the replay id keep two tenants apart."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from azure.servicebus import ServiceBusMessage

from shared.adapters.dead_letters.servicebus_messages import replay_message_id
from shared.domain.envelope import MAX_MESSAGE_ID_LENGTH, Envelope, to_queue_message
from shared.domain.events import Event

EVENT_ID = "1f0c2b8e-6d3a-4c1e-9b7f-2a5d8e4c6b10"


def message_id_of(tenant: str, event_id: str = EVENT_ID) -> str:
    envelope = Envelope.model_validate(
        {
            "event": Event.model_validate({"eventType": "page_view", "tenantId": tenant, "eventId": event_id}),
            "receivedAt": datetime(2026, 1, 31, 12, 0, tzinfo=UTC),
            "clientNetwork": "203.0.113.0/24",
            "clientKey": "a-client-key",
            "ipRequestsLastMinute": 0,
        }
    )
    return to_queue_message(envelope).message_id


def test_two_tenants_sending_one_event_id_get_two_message_ids() -> None:
    # One message id would let duplicate detection drop the second tenant's event after its 202.
    assert message_id_of("acme") != message_id_of("globex")


def test_the_message_id_is_fixed_per_tenant_and_event_and_names_both() -> None:
    assert message_id_of("acme") == message_id_of("acme") == f"acme/{EVENT_ID}"
    assert message_id_of("acme", str(UUID(int=1))) != message_id_of("acme")


def test_the_longest_tenant_id_still_gives_a_message_id_service_bus_accepts() -> None:
    longest = message_id_of("t" * 64)

    assert len(longest) <= MAX_MESSAGE_ID_LENGTH
    assert ServiceBusMessage(b"{}", message_id=longest).message_id == longest


def test_a_replay_id_keeps_its_readable_form_when_it_fits() -> None:
    assert replay_message_id(f"acme/{EVENT_ID}", "dlq-42") == f"acme/{EVENT_ID}:replay:dlq-42"


def test_a_replay_id_that_would_be_too_long_is_shortened_deterministically() -> None:
    original = message_id_of("t" * 64)
    biggest_dead_letter = f"poison-{2**63 - 1}"

    replay = replay_message_id(original, biggest_dead_letter)

    assert len(replay) <= MAX_MESSAGE_ID_LENGTH
    assert ServiceBusMessage(b"{}", message_id=replay).message_id == replay
    assert replay.endswith(f":replay:{biggest_dead_letter}")
    assert replay == replay_message_id(original, biggest_dead_letter), "a retried replay is dropped as a duplicate"
    assert replay != replay_message_id(message_id_of("u" * 64), biggest_dead_letter)
    # A replay of a replay stays within the limit too.
    again = replay_message_id(replay, biggest_dead_letter)
    assert len(again) <= MAX_MESSAGE_ID_LENGTH
