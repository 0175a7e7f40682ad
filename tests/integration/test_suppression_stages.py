"""An erased subject's events stay out, at every stage, over real embedded stores.

The process stage (first delivery, redelivery, replayed dead letter), the change feed (a
document stored by a delivery in flight during the erasure) and reconciliation each consult
the real `SuppressionList` over the real embedded privacy store; messages go through the real
embedded queue and its dead-letter queue, as the local host drives them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from changefeed.reconcile import HOUR, Reconciler
from changefeed.service import AnalyticsFeedService
from cloudscale_local.host.changefeed_trigger import to_documents
from cloudscale_local.host.servicebus_trigger import to_function_message
from process.blueprint import delivered_message
from process.service import ProcessOutcome, ProcessService
from process.store_guard import StoreGuard, StoreUnavailableError
from shared.adapters.analytics.embedded_analytics import EmbeddedAnalyticsStore
from shared.adapters.dead_letters.embedded import EmbeddedDeadLetterBrowser, EmbeddedDeadLetterSink
from shared.adapters.event_queue.embedded_queue import EmbeddedQueue, LockedMessage
from shared.adapters.event_store.embedded_event_store import EmbeddedEventStore
from shared.adapters.privacy.embedded_privacy import PRIVACY_FILE, EmbeddedPrivacyStore
from shared.domain.client_identity import ClientKeyer
from shared.domain.envelope import Envelope, QueueMessage, to_queue_message
from shared.domain.events import Event
from shared.domain.fraud_rules import default_rules
from shared.domain.privacy import Suppression, SuppressionMode, subject_hash
from shared.domain.stored_event import StoredEvent
from shared.suppression import SuppressionList
from shared.telemetry import AnalyticsMetrics, ProcessMetrics
from tests.integration.test_reconcile import stored_event
from tests.metrics import Attributes, counter_values

SECRET = b"k" * 32
ERASED_AT = datetime(2026, 11, 27, 12, tzinfo=UTC)
CLIENT = ClientKeyer(SECRET).identify("203.0.113.77")


def envelope(user: str, *, received_at: datetime = ERASED_AT, requests_last_minute: int = 1) -> Envelope:
    event = Event.model_validate(
        {"eventType": "page_view", "tenantId": "acme", "eventId": str(uuid.uuid4()), "userId": user, "url": "/"}
    )
    return Envelope(
        event=event,
        received_at=received_at,
        client_network=CLIENT.network,
        client_key=CLIENT.key,
        ip_requests_last_minute=requests_last_minute,
    )


class Stages:
    """The process stage, the change feed and reconciliation over embedded stores in one folder."""

    @staticmethod
    async def _secret() -> bytes:
        return SECRET

    def __init__(self, data_dir: Path) -> None:
        self.queue = EmbeddedQueue(data_dir / "queue.sqlite3", lock_seconds=30, max_delivery_count=10)
        self.events = EmbeddedEventStore(data_dir / "events.sqlite3")
        self.analytics = EmbeddedAnalyticsStore(data_dir / "analytics.sqlite3")
        self.privacy = EmbeddedPrivacyStore(data_dir / PRIVACY_FILE)
        self.suppressions = SuppressionList(self.privacy, self._secret, cache_seconds=10)
        self.reader = InMemoryMetricReader()
        meter = MeterProvider(metric_readers=[self.reader]).get_meter("test")
        rules = default_rules()
        self.processor = ProcessService(
            self.events,
            EmbeddedDeadLetterSink(self.queue),
            StoreGuard(budget_seconds=0.3, first_wait=0.01, max_wait=0.02),
            rules,
            rules.distinct_users_tracker(),
            ProcessMetrics(meter),
            suppressions=self.suppressions,
        )
        self.feed = AnalyticsFeedService(
            self.analytics, AnalyticsMetrics(meter), suppressions=self.suppressions, events=self.events
        )
        self.reconciler = Reconciler(
            self.events, self.analytics, self.analytics, suppressions=self.suppressions, metrics=AnalyticsMetrics(meter)
        )
        self._cursor = 0

    async def erase(self, user: str, *, mode: SuppressionMode = "suppress") -> None:
        """What an erasure's first step does: the tombstone, then (on this worker) the cache forgotten."""
        hashed = subject_hash(SECRET, "acme", "userId", user)
        await self.privacy.save_suppression(Suppression("acme", hashed, "userId", ERASED_AT, mode=mode))
        self.suppressions.forget("acme")

    async def send(self, *envelopes: Envelope) -> None:
        await self.queue.send([to_queue_message(e) for e in envelopes])

    async def receive(self) -> list[LockedMessage]:
        return await self.queue.receive(max_messages=10)

    async def process(self, received: list[LockedMessage]) -> list[ProcessOutcome]:
        """One invocation as the local host runs it: the function's messages, then completion."""
        outcomes = await self.processor.handle_batch([delivered_message(to_function_message(m)) for m in received])
        await self.queue.complete_many([m.lock_token for m in received])
        return outcomes

    async def run_change_feed(self) -> int:
        suppressed = 0
        while changes := await self.events.changes(self._cursor, 100):
            outcome = await self.feed.handle([document.to_dict() for document in to_documents(changes)])
            suppressed += outcome.suppressed
            self._cursor = changes[-1].sequence
        return suppressed

    async def stored_users(self) -> list[str | None]:
        changes = await self.events.changes(0, 1000)
        return sorted(StoredEvent.from_document(c.document).user_id for c in changes)  # type: ignore[type-var]

    async def analytics_users(self) -> list[str | None]:
        start, end = ERASED_AT - timedelta(days=400), datetime.now(UTC) + HOUR
        rows = await self.events.stored_between(start, end)
        present = await self.analytics.event_keys(start, end)
        return sorted(e.user_id for e, _ in rows if (e.tenant_id, e.event_id) in present)  # type: ignore[type-var]

    def counter(self, name: str) -> dict[Attributes, float]:
        return counter_values(self.reader, name)

    def suppressed(self) -> dict[str, float]:
        return {dict(key)["stage"]: value for key, value in self.counter("cloudscale_events_suppressed_total").items()}

    async def close(self) -> None:
        await self.events.close()
        await self.analytics.close()
        await self.privacy.close()
        self.queue.close()


@pytest.fixture
async def stages(tmp_path: Path) -> AsyncIterator[Stages]:
    opened = Stages(tmp_path)
    yield opened
    await opened.close()


async def test_an_erased_users_new_event_is_dropped_and_completed_and_others_pass(stages: Stages) -> None:
    await stages.erase("u-erased")
    # A suspicious event (velocity rule) of the erased user: no alert, no fraud count either.
    await stages.send(envelope("u-erased", requests_last_minute=50), envelope("u-other"))

    outcomes = await stages.process(await stages.receive())

    assert outcomes == [ProcessOutcome.SUPPRESSED, ProcessOutcome.STORED]
    assert await stages.stored_users() == ["u-other"]
    assert await stages.queue.depth() == 0  # completed,
    assert await stages.queue.dead_letter_depth() == 0  # not dead-lettered
    assert stages.suppressed() == {"process": 1}
    assert stages.counter("cloudscale_fraud_detected_total") == {}


async def test_a_redelivery_after_the_erasure_is_dropped(stages: Stages) -> None:
    # GIVEN the erased user's message was delivered once before the erasure and handed back
    await stages.send(envelope("u-erased"))
    first = await stages.receive()
    await stages.queue.abandon_many([m.lock_token for m in first])
    await stages.erase("u-erased")

    # WHEN it is delivered again
    again = await stages.receive()

    # THEN it is dropped
    assert [m.delivery_count for m in again] == [2]
    assert await stages.process(again) == [ProcessOutcome.SUPPRESSED]
    assert await stages.stored_users() == []
    assert await stages.queue.depth() == 0


async def test_a_replayed_dead_letter_of_an_erased_user_is_dropped(stages: Stages) -> None:
    # GIVEN the erased user's message sat in the dead-letter queue during the erasure
    await stages.send(envelope("u-erased"), envelope("u-other"))
    for received in await stages.receive():
        await stages.queue.dead_letter(received.lock_token, "MaxDeliveryCountExceeded")
    await stages.erase("u-erased")

    # WHEN an operator replays every dead letter
    replay = await EmbeddedDeadLetterBrowser(stages.queue).replay(None)
    outcomes = await stages.process(await stages.receive())

    # THEN the other user's event is stored and the erased user's is not
    assert len(replay.replayed) == 2
    assert sorted(o.value for o in outcomes) == ["stored", "suppressed"]
    assert await stages.stored_users() == ["u-other"]
    assert await stages.queue.dead_letter_depth() == 0


async def test_an_unreadable_message_of_an_erased_user_is_dropped_not_parked(stages: Stages) -> None:
    # GIVEN messages the process stage cannot read (a newer ingest's schema version, written
    # without an offset on its receive time): one of the erased user, one of another user
    await stages.erase("u-erased")
    bodies = []
    for user in ("u-erased", "u-other"):
        raw = orjson.loads(envelope(user).to_json())
        raw["schemaVersion"] = 99
        raw["receivedAt"] = "2026-11-27T13:00:00"
        bodies.append(QueueMessage(message_id=str(uuid.uuid4()), body=orjson.dumps(raw)))
    await stages.queue.send(bodies)

    # WHEN they are processed
    outcomes = await stages.process(await stages.receive())

    # THEN the erased user's is dropped (no dead letter keeps the erased user's event) and the
    # other one is parked as before
    assert outcomes == [ProcessOutcome.SUPPRESSED, ProcessOutcome.DEAD_LETTERED]
    dead_letters = await EmbeddedDeadLetterBrowser(stages.queue).list(10)
    assert [b"u-other" in d.body for d in dead_letters] == [True]
    assert stages.suppressed() == {"process": 1}


async def test_delete_mode_drops_an_event_received_before_the_erasure_and_keeps_a_later_one(stages: Stages) -> None:
    await stages.erase("u-erased", mode="delete")
    old = envelope("u-erased", received_at=ERASED_AT - timedelta(minutes=5))
    new = envelope("u-erased", received_at=ERASED_AT + timedelta(minutes=5))
    await stages.send(old, new)

    outcomes = await stages.process(await stages.receive())

    assert outcomes == [ProcessOutcome.SUPPRESSED, ProcessOutcome.STORED]
    stored = await stages.events.get("acme", str(new.event.event_id))
    assert stored is not None
    assert await stages.events.get("acme", str(old.event.event_id)) is None


async def test_a_suppression_list_that_cannot_be_read_hands_the_batch_back_unstored(stages: Stages) -> None:
    await stages.send(envelope("u-1"))
    received = await stages.receive()
    await stages.privacy.close()  # the privacy store is down, and nothing is cached yet

    with pytest.raises(StoreUnavailableError):
        await stages.processor.handle_batch([delivered_message(to_function_message(m)) for m in received])

    assert await stages.stored_users() == []
    assert stages.counter("cloudscale_processing_retries_total")  # retried like a store outage


async def test_the_change_feed_leaves_out_and_deletes_an_event_stored_in_flight(stages: Stages) -> None:
    # GIVEN events of two users stored (the erased user's by a delivery already past its check)
    await stages.send(envelope("u-erased"), envelope("u-other"), envelope("u-erased"))
    assert await stages.process(await stages.receive()) == [ProcessOutcome.STORED] * 3
    await stages.erase("u-erased")

    # WHEN the change feed delivers them
    suppressed = await stages.run_change_feed()

    # THEN only the other user's reaches analytics, and the erased user's are gone from the store
    assert suppressed == 2
    assert await stages.analytics_users() == ["u-other"]
    assert await stages.stored_users() == ["u-other"]
    assert stages.suppressed() == {"changefeed": 2}
    # A retried batch deletes nothing more and counts nothing twice.
    stages._cursor = 0
    assert await stages.run_change_feed() == 0


async def test_reconciliation_resends_the_others_but_never_the_suppressed(stages: Stages) -> None:
    # GIVEN three stored events that never reached analytics (the change feed skipped them)
    now = datetime.now(UTC)
    for n, user in enumerate(("u-erased", "u-other", "u-erased"), start=1):
        event = stored_event(n, received_at=now - timedelta(minutes=1))
        assert await stages.events.save(event.model_copy(update={"user_id": user}))
    await stages.erase("u-erased")
    start, end = now - 2 * HOUR, now + HOUR

    # WHEN reconciliation runs
    report = await stages.reconciler.reconcile(start, end)

    # THEN only the other user's event is re-sent; the erased user's are counted and deleted
    assert (report.resent, report.suppressed) == (1, 2)
    assert await stages.analytics_users() == ["u-other"]
    assert await stages.stored_users() == ["u-other"]
    assert stages.suppressed() == {"reconcile": 2}
    # AND the next run finds nothing to do: no hour re-compared forever
    again = await stages.reconciler.reconcile(start, end)
    assert again.differences == []
