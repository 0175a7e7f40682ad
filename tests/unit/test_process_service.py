"""The process use case with in-memory fakes of its ports: outcomes, metrics, alerts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import orjson
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from process.service import DeliveredMessage, ProcessOutcome, ProcessService
from process.store_guard import StoreGuard, StoreUnavailableError
from shared.domain.client_identity import ClientKeyer
from shared.domain.envelope import QueueMessage
from shared.domain.fraud_rules import default_rules
from shared.domain.stored_event import StoredEvent
from shared.ports import EventStoreError, PortError
from shared.telemetry import ProcessMetrics
from tests.metrics import Attributes, counter_values

NOW = datetime(2026, 11, 24, 12, 0, 5, tzinfo=UTC)
CLIENT_IP = "203.0.113.77"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


class InMemoryStore:
    """An `EventStore` fake with the real contract: insert-if-absent, per tenant."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, str], StoredEvent] = {}
        self.down = False
        self.batches: list[int] = []
        self.fail_after: int | None = None

    async def save(self, event: StoredEvent) -> bool:
        if self.down:
            raise EventStoreError("store down")
        key = (event.tenant_id, event.event_id)
        if key in self.events:
            return False
        self.events[key] = event
        return True

    async def save_many(self, events: Sequence[StoredEvent]) -> list[bool]:
        self.batches.append(len(events))
        if self.fail_after is not None:
            # Stores the first `fail_after` events, then fails: a partly written batch.
            stored = [await self.save(event) for event in events[: self.fail_after]]
            self.fail_after = None
            raise EventStoreError(f"failed after {len(stored)} events")
        return [await self.save(event) for event in events]

    async def get(self, tenant_id: str, event_id: str) -> StoredEvent | None:
        return self.events.get((tenant_id, event_id))

    async def check(self) -> None: ...

    async def close(self) -> None: ...


class InMemoryDeadLetters:
    def __init__(self) -> None:
        self.parked: list[tuple[QueueMessage, str, str]] = []
        self.broken = False

    async def dead_letter(self, message: QueueMessage, reason: str, description: str) -> None:
        if self.broken:
            raise PortError("poison queue unavailable")
        self.parked.append((message, reason, description))

    async def close(self) -> None: ...


class Harness:
    def __init__(self) -> None:
        self.store = InMemoryStore()
        self.dead_letters = InMemoryDeadLetters()
        self.reader = InMemoryMetricReader()
        meter = MeterProvider(metric_readers=[self.reader]).get_meter("test")
        rules = default_rules()
        self.service = ProcessService(
            self.store,
            self.dead_letters,
            StoreGuard(budget_seconds=0.2, first_wait=0.01, max_wait=0.02),
            rules,
            rules.distinct_users_tracker(),
            ProcessMetrics(meter),
            clock=lambda: NOW,
        )

    def counter(self, name: str) -> dict[Attributes, float]:
        return counter_values(self.reader, name)


CLIENT = ClientKeyer(b"k" * 32).identify(CLIENT_IP)


def message(requests_last_minute: int = 1, *, legacy: bool = False, **event: Any) -> DeliveredMessage:
    """A queued event as ingest sends it (`legacy`: as an ingest of schema version 1 did, raw IP included)."""
    event_id = str(uuid4())
    client: dict[str, Any] = (
        {"schemaVersion": 1, "clientIp": CLIENT_IP}
        if legacy
        else {"schemaVersion": 2, "clientNetwork": CLIENT.network, "clientKey": CLIENT.key}
    )
    body = {
        **client,
        "event": {"eventType": "page_view", "tenantId": "acme", "eventId": event_id, **event},
        "receivedAt": "2026-11-24T12:00:00Z",
        "userAgent": CHROME,
        "ipRequestsLastMinute": requests_last_minute,
    }
    return DeliveredMessage(body=orjson.dumps(body), message_id=event_id, enqueued_at=NOW, delivery_count=1)


@pytest.fixture
def harness() -> Harness:
    return Harness()


async def test_an_event_is_stored_enriched_and_scored(harness: Harness) -> None:
    delivered = message(url="/home")
    assert await harness.service.handle(delivered) is ProcessOutcome.STORED

    stored = harness.store.events[("acme", delivered.message_id or "")]
    assert stored.url == "/home"
    assert stored.enrichment.client_network == "203.0.113.0/24"
    assert stored.enrichment.processed_at == NOW
    assert stored.enrichment.queue_latency_ms == 5000
    assert stored.enrichment.agent is not None
    assert stored.enrichment.agent.browser == "Chrome"
    assert stored.fraud.suspicious is False
    assert harness.counter("cloudscale_events_processed_total") == {(("outcome", "stored"),): 1}


async def test_a_redelivery_is_a_duplicate_and_counts_no_fraud_twice(harness: Harness) -> None:
    delivered = message(requests_last_minute=11)
    assert await harness.service.handle(delivered) is ProcessOutcome.STORED
    assert await harness.service.handle(delivered) is ProcessOutcome.DUPLICATE

    assert len(harness.store.events) == 1
    assert harness.counter("cloudscale_fraud_detected_total") == {(("rule", "ip-velocity"),): 1}
    assert harness.counter("cloudscale_events_processed_total") == {
        (("outcome", "stored"),): 1,
        (("outcome", "duplicate"),): 1,
    }


async def test_a_suspicious_event_is_stored_and_alerted_without_personal_data(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    delivered = message(requests_last_minute=12, userId="alice@example.com", url="/account/alice")
    with caplog.at_level(logging.WARNING, logger="cloudscale.security"):
        assert await harness.service.handle(delivered) is ProcessOutcome.STORED

    stored = harness.store.events[("acme", delivered.message_id or "")]
    assert stored.fraud.suspicious is True
    [alert] = [record for record in caplog.records if record.name == "cloudscale.security"]
    assert alert.levelno == logging.WARNING
    assert alert.getMessage().startswith(f"suspicious event {delivered.message_id}")
    assert alert.__dict__["reasonCodes"] == "VELOCITY_IP_MINUTE"
    text = alert.getMessage() + repr(alert.__dict__)
    for personal in (CLIENT_IP, "203.0.113", "alice", "/account"):
        assert personal not in text


async def test_a_velocity_flood_from_one_client_is_one_alert_and_every_event_is_counted(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN 300 suspicious events from one client, in batches of 100
    flood = [message(requests_last_minute=500) for _ in range(300)]
    with caplog.at_level(logging.WARNING, logger="cloudscale.security"):
        for start in range(0, 300, 100):
            await harness.service.handle_batch(flood[start : start + 100])

    # THEN one alert line (not 300), and every one of them counted by rule
    assert len([record for record in caplog.records if record.name == "cloudscale.security"]) == 1
    assert harness.counter("cloudscale_fraud_detected_total") == {(("rule", "ip-velocity"),): 300}


async def test_a_poison_message_is_parked_with_its_reason_and_not_stored(harness: Harness) -> None:
    delivered = DeliveredMessage(body=b"{not json", message_id="m-1", subject="page_view")
    assert await harness.service.handle(delivered) is ProcessOutcome.DEAD_LETTERED

    [(parked, reason, description)] = harness.dead_letters.parked
    assert parked.message_id == "m-1"
    assert parked.body == b"{not json"
    assert parked.subject == "page_view"
    assert reason == "UndecodableMessage"
    assert description
    assert harness.store.events == {}
    assert harness.counter("cloudscale_events_dead_lettered_total") == {(("reason", "UndecodableMessage"),): 1}


async def test_when_parking_fails_the_message_is_not_let_go(harness: Harness) -> None:
    harness.dead_letters.broken = True
    with pytest.raises(PortError):
        await harness.service.handle(DeliveredMessage(body=b"[]", message_id="m-2"))


async def test_a_store_down_for_the_whole_budget_hands_the_message_back(harness: Harness) -> None:
    harness.store.down = True
    with pytest.raises(StoreUnavailableError):
        await harness.service.handle(message())
    assert harness.dead_letters.parked == []


async def test_a_message_of_schema_version_1_is_still_processed_without_keeping_its_ip(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # Queued by the previous ingest, with the raw clientIp: still enriched and scored.
    with caplog.at_level(logging.WARNING, logger="cloudscale.security"):
        outcomes = [await harness.service.handle(message(legacy=True, userId=f"user-{n}")) for n in range(12)]

    assert outcomes == [ProcessOutcome.STORED] * 12
    events = list(harness.store.events.values())
    assert {event.enrichment.client_network for event in events} == {"203.0.113.0/24"}
    assert sum(event.fraud.suspicious for event in events) == 2, "distinct users still counted per client"
    assert CLIENT_IP not in "".join(record.getMessage() + repr(record.__dict__) for record in caplog.records)
    assert all(CLIENT_IP not in event.model_dump_json() for event in events)


async def test_many_users_from_one_ip_are_flagged(harness: Harness) -> None:
    outcomes = [await harness.service.handle(message(userId=f"user-{n}")) for n in range(12)]
    assert outcomes == [ProcessOutcome.STORED] * 12
    verdicts = sorted(event.fraud.suspicious for event in harness.store.events.values())
    # More than 10 distinct users from one IP: the 11th and 12th are flagged.
    assert verdicts == [False] * 10 + [True] * 2


def test_a_trigger_message_without_an_offset_on_its_enqueue_time_is_read_as_utc() -> None:
    # The Functions host sends EnqueuedTimeUtc without "Z"; the library parses it naive.
    from azure.functions.servicebus import ServiceBusMessage as TriggerMessage

    from process.blueprint import delivered_message

    naive = datetime(2026, 11, 24, 12, 0, 1)  # naive on purpose
    trigger_message = TriggerMessage(
        body=message().body,
        message_id="m-1",
        enqueued_time_utc=naive,
        application_properties={},
        user_properties={},
    )
    delivered = delivered_message(trigger_message)
    assert delivered.enqueued_at == naive.replace(tzinfo=UTC)


async def test_a_batch_is_stored_in_one_write_and_a_poison_message_fails_no_neighbour(harness: Harness) -> None:
    # GIVEN a batch of two good events around an undecodable message
    first, second = message(url="/a"), message(url="/b")
    poison = DeliveredMessage(body=b"{not json", message_id="m-poison")

    outcomes = await harness.service.handle_batch([first, poison, second])

    # THEN the poison is parked, the good ones are stored in one write, outcomes keep their order
    assert outcomes == [ProcessOutcome.STORED, ProcessOutcome.DEAD_LETTERED, ProcessOutcome.STORED]
    assert harness.store.batches == [2]
    assert {key[1] for key in harness.store.events} == {first.message_id, second.message_id}
    assert [parked.message_id for parked, _, _ in harness.dead_letters.parked] == ["m-poison"]


async def test_the_same_event_twice_in_a_batch_is_stored_once(harness: Harness) -> None:
    delivered = message()
    again = DeliveredMessage(body=delivered.body, message_id="another-message-id", enqueued_at=NOW)

    outcomes = await harness.service.handle_batch([delivered, again])

    assert outcomes == [ProcessOutcome.STORED, ProcessOutcome.DUPLICATE]
    assert harness.store.batches == [1]
    assert len(harness.store.events) == 1


async def test_a_batch_partly_written_before_a_failure_is_retried_whole(harness: Harness) -> None:
    # GIVEN a store that writes one event of the batch and then fails, once
    batch = [message(), message(), message()]
    harness.store.fail_after = 1

    outcomes = await harness.service.handle_batch(batch)

    # THEN the guard retried the batch: the event written before the failure reads as a
    # duplicate, the others are stored, and every event is in the store once
    assert outcomes == [ProcessOutcome.DUPLICATE, ProcessOutcome.STORED, ProcessOutcome.STORED]
    assert harness.store.batches == [3, 3]
    assert len(harness.store.events) == 3


async def test_a_batch_whose_store_stays_down_is_handed_back_with_nothing_parked(harness: Harness) -> None:
    harness.store.down = True
    with pytest.raises(StoreUnavailableError):
        await harness.service.handle_batch([message(), message()])
    assert harness.dead_letters.parked == []
    assert harness.store.events == {}


async def test_a_message_that_breaks_scoring_is_parked_alone_and_its_neighbours_are_stored(harness: Harness) -> None:
    # GIVEN a batch where scoring one event raises (a defect, not bad input)
    good, broken = message(url="/a"), message(url="/boom")
    score = harness.service.score

    def failing_score(envelope: Any, delivered: DeliveredMessage) -> StoredEvent:
        if delivered.message_id == broken.message_id:
            raise RuntimeError("rule engine defect")
        return score(envelope, delivered)

    harness.service.score = failing_score  # type: ignore[method-assign,assignment]

    outcomes = await harness.service.handle_batch([broken, good])

    # THEN the broken one is parked with its reason and the good one is stored
    assert outcomes == [ProcessOutcome.DEAD_LETTERED, ProcessOutcome.STORED]
    [(parked, reason, description)] = harness.dead_letters.parked
    assert (parked.message_id, reason) == (broken.message_id, "ProcessingFailed")
    assert description == "RuntimeError: rule engine defect"
    assert set(harness.store.events) == {("acme", good.message_id or "")}
