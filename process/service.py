"""The process stage's use case: queue messages in, stored, enriched, scored events out.

`ProcessService.handle_batch` is what the Service Bus trigger calls for each batch of
messages, on Azure and under the local host alike (`handle` is the same for one message).
Its contract with the host:

- returns normally: every message is done (stored now, already stored, or parked as
  poison), and the host completes them;
- raises `StoreUnavailableError`: the store stayed down for the whole retry budget; the
  host abandons the batch and it is delivered again later (counted against
  `maxDeliveryCount`, so only a store down for many budgets in a row dead-letters it).

An erased subject's event (`shared.suppression`) is not stored: its outcome is SUPPRESSED and
the host completes the message. The check runs wherever the message comes from (a first
delivery, a redelivery, a dead letter replayed onto the queue), inside the same guarded call
as the write, so a suppression list that cannot be read holds the batch back like a store
outage does: nothing is stored unchecked.

Permanently bad messages (see `process.decoding`) are parked in the dead-letter sink with
their reason and then completed: on Azure the Python trigger cannot dead-letter a message
itself (see docs/tradeoffs.md), and raising would only burn deliveries and lose the reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from opentelemetry import trace

from process.decoding import PoisonMessageError, decode_envelope
from process.security_alerts import SecurityAlerts
from process.store_guard import StoreGuard
from shared.domain.dead_letter_reasons import PROCESSING_FAILED
from shared.domain.distinct_users import DistinctUsersTracker
from shared.domain.envelope import Envelope, QueueMessage
from shared.domain.fraud import FraudRuleSet
from shared.domain.privacy import message_identifiers
from shared.domain.scoring import score_event
from shared.domain.stored_event import StoredEvent
from shared.ports import DeadLetterSink, EventStore
from shared.suppression import SuppressionCheck, event_suppressed
from shared.telemetry import ProcessMetrics, message_parent

__all__ = ["DeliveredMessage", "ProcessOutcome", "ProcessService"]

logger = logging.getLogger(__name__)

tracer = trace.get_tracer("cloudscale.process")


class ProcessOutcome(Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    """Already stored by an earlier delivery: nothing changed."""
    DEAD_LETTERED = "dead_lettered"
    SUPPRESSED = "suppressed"
    """An erased subject's event: dropped, not stored (`shared.suppression`)."""


@dataclass(frozen=True, slots=True)
class DeliveredMessage:
    """A queue message as the trigger hands it over (broker-neutral)."""

    body: bytes
    message_id: str | None = None
    enqueued_at: datetime | None = None
    delivery_count: int = 1
    content_type: str | None = None
    subject: str | None = None
    correlation_id: str | None = None
    application_properties: Mapping[str, str | int] = field(default_factory=dict)

    def to_queue_message(self) -> QueueMessage:
        """The message as it was sent, for parking it in the dead-letter queue."""
        return QueueMessage(
            message_id=self.message_id or "",
            body=self.body,
            content_type=self.content_type or "application/json",
            subject=self.subject,
            correlation_id=self.correlation_id,
            application_properties=dict(self.application_properties),
        )


class ProcessService:
    """Decode, enrich, score and store one event, idempotently."""

    def __init__(
        self,
        store: EventStore,
        dead_letters: DeadLetterSink,
        guard: StoreGuard,
        rules: FraudRuleSet,
        users: DistinctUsersTracker | None,
        metrics: ProcessMetrics,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        alerts: SecurityAlerts | None = None,
        suppressions: SuppressionCheck | None = None,
    ) -> None:
        """`suppressions`: the list checked before each write; None only where no subject is ever
        erased (tests of other concerns, benchmarks). The deployed stage always has one."""
        self._store = store
        self._suppressions = suppressions
        self._dead_letters = dead_letters
        self._guard = guard
        self._rules = rules
        self._users = users
        self._metrics = metrics
        self._clock = clock
        self._alerts = alerts or SecurityAlerts()

    async def handle(self, message: DeliveredMessage) -> ProcessOutcome:
        """Process one delivery; see the module docstring for what returning and raising mean."""
        return (await self.handle_batch([message]))[0]

    async def handle_batch(self, messages: Sequence[DeliveredMessage]) -> list[ProcessOutcome]:
        """Process a batch of deliveries; return each one's outcome, in order.

        A poison message is parked on its own and never fails its neighbours. The good ones
        are stored together (one `save_many`), so a store that stays down for the whole
        budget raises `StoreUnavailableError` for the batch: the host abandons all of it,
        and on redelivery the events this attempt did store report DUPLICATE.

        Tracing: each event's span continues the trace its message was sent in (one trace per
        event, from the producer's request to the store) and links to the current span (the
        batch's invocation); it lasts until the batch's write and records its outcome.
        """
        started = time.perf_counter()
        outcomes: list[ProcessOutcome | None] = [None] * len(messages)
        pending: list[_Pending] = []
        invocation = trace.get_current_span().get_span_context()
        invocation_links = [trace.Link(invocation)] if invocation.is_valid else []
        try:
            for position, message in enumerate(messages):
                try:
                    envelope = decode_envelope(message.body)
                    stored_event = self.score(envelope, message)
                except PoisonMessageError as poison:
                    if await self._unreadable_suppressed(message.body):
                        outcomes[position] = ProcessOutcome.SUPPRESSED
                        continue
                    await self._park(message, poison)
                    outcomes[position] = ProcessOutcome.DEAD_LETTERED
                    continue
                except Exception as exc:
                    # A message that breaks scoring would fail its whole batch on every
                    # delivery and spend its neighbours' deliveries with its own: park it
                    # alone (replayable once fixed) and let the batch go on.
                    logger.exception("processing message %s failed; parking it", message.message_id)
                    if await self._unreadable_suppressed(message.body):
                        outcomes[position] = ProcessOutcome.SUPPRESSED
                        continue
                    await self._park(message, PoisonMessageError(PROCESSING_FAILED, f"{type(exc).__name__}: {exc}"))
                    outcomes[position] = ProcessOutcome.DEAD_LETTERED
                    continue
                span = tracer.start_span(
                    "process event",
                    context=message_parent(message.application_properties, envelope.trace_context),
                    kind=trace.SpanKind.CONSUMER,
                    links=invocation_links,
                    attributes={
                        "messaging.message.id": message.message_id or "",
                        "cloudscale.event_id": stored_event.id,
                    },
                )
                pending.append(_Pending(position, envelope, stored_event, span))
            for item, stored in zip(pending, await self._store_all(pending), strict=True):
                outcomes[item.position] = stored
            return [outcome for outcome in outcomes if outcome is not None]
        finally:
            elapsed = time.perf_counter() - started
            for item in pending:
                item.span.end()
            for done in outcomes:
                # Each event was in the invocation for its whole duration: that is its processing time.
                self._metrics.processing_duration.record(elapsed, {"outcome": done.value if done else "failed"})

    def score(self, envelope: Envelope, message: DeliveredMessage) -> StoredEvent:
        """The document to store for `envelope` (`shared.domain.scoring`), at this clock's time.

        Not pure: it reads the clock and records the event in the distinct-users tracker.
        """
        distinct_users = (
            # Receive time, not processing time: a backlog drained after an outage, or a
            # replay, must not crowd hours of traffic into one window.
            self._users.observe(envelope.client_key, envelope.event.user_id, envelope.received_at.timestamp())
            if self._users is not None
            else 0
        )
        return score_event(
            envelope,
            self._rules,
            processed_at=self._clock(),
            enqueued_at=message.enqueued_at,
            distinct_users_from_ip=distinct_users,
        )

    async def _store_all(self, pending: Sequence[_Pending]) -> list[ProcessOutcome]:
        if not pending:
            return []
        # The same event twice in one batch (sent twice under different message ids): the
        # first copy is saved, the others are duplicates as they would be a batch later.
        first_of: dict[tuple[str, str], int] = {}
        for index, item in enumerate(pending):
            first_of.setdefault((item.stored_event.tenant_id, item.stored_event.event_id), index)
        unique = sorted(set(first_of.values()))
        # One span for the batch's write, under the invocation's span and linked to each
        # event's span (each continues its producer's trace), so the store's own spans hang
        # under it: one write cannot have a parent in every event's trace.
        links = [trace.Link(item.span.get_span_context()) for item in pending]

        async def check_then_save() -> tuple[set[int], dict[int, bool]]:
            # Checked again on each attempt: a retry after an outage may see a tombstone
            # written meanwhile. Cheap when cached: the list reads a tenant once per period.
            dropped = await self._suppressed(pending)
            to_save = [i for i in unique if i not in dropped]
            saved = await self._store.save_many([pending[i].stored_event for i in to_save]) if to_save else []
            return dropped, dict(zip(to_save, saved, strict=True))

        try:
            with tracer.start_as_current_span("store events", links=links):
                dropped, stored_now = await self._guard.run(check_then_save, on_retry=self._count_retry)
        except Exception as exc:
            for item in pending:
                item.span.record_exception(exc)
                item.span.set_status(trace.StatusCode.ERROR, "the event store stayed unavailable")
            raise
        return [
            self._settle(item, suppressed=index in dropped, stored=stored_now.get(index, False))
            for index, item in enumerate(pending)
        ]

    def _settle(self, item: _Pending, *, suppressed: bool, stored: bool) -> ProcessOutcome:
        """One event's outcome, recorded on its span and in the metrics (and alerted, if suspicious)."""
        if suppressed:
            outcome = ProcessOutcome.SUPPRESSED
        else:
            outcome = ProcessOutcome.STORED if stored else ProcessOutcome.DUPLICATE
        item.span.set_attribute("cloudscale.outcome", outcome.value)
        self._metrics.events_processed.add(1, {"outcome": outcome.value})
        if suppressed:
            # No alert and no fraud count: the event is not kept, and an alert would carry
            # the erased subject's event into the logs.
            self._metrics.events_suppressed.add(1, {"stage": "process"})
            return outcome
        stored_event = item.stored_event
        if stored_event.fraud.suspicious:
            if stored:
                for reason in stored_event.fraud.reasons:
                    self._metrics.fraud_detected.add(1, {"rule": reason.rule})
            # Alerted on a duplicate too: the first delivery may have stored the event and
            # died before its alert (at least once; the alert says which it was).
            self._alerts.alert(stored_event, item.envelope.client_key, redelivered=not stored)
        return outcome

    async def _suppressed(self, pending: Sequence[_Pending]) -> set[int]:
        """The positions in `pending` of erased subjects' events; raises `PrivacyStoreError`."""
        if self._suppressions is None:
            return set()
        return {i for i, item in enumerate(pending) if await event_suppressed(self._suppressions, item.stored_event)}

    async def _unreadable_suppressed(self, body: bytes) -> bool:
        """Whether a message about to be parked is an erased subject's: then it is dropped instead,
        since a dead letter would keep the erased subject's event. Raises `PrivacyStoreError`
        (the batch is handed back, as for any store that is down)."""
        identifiers = message_identifiers(body) if self._suppressions is not None else None
        if self._suppressions is None or identifiers is None:
            return False
        tenant_id, user_id, anonymous_id, received_at = identifiers
        if received_at is None or received_at.tzinfo is None:
            # An unknown (or offset-less) receive time counts as before the erasure: erased data
            # is never kept on a guess.
            received_at = datetime.min.replace(tzinfo=UTC)
        if not await self._suppressions.drops(tenant_id, user_id, anonymous_id, received_at):
            return False
        self._metrics.events_processed.add(1, {"outcome": ProcessOutcome.SUPPRESSED.value})
        self._metrics.events_suppressed.add(1, {"stage": "process"})
        return True

    def _count_retry(self, error: BaseException) -> None:
        self._metrics.processing_retries.add(1, {"error": type(error).__name__})

    async def _park(self, message: DeliveredMessage, poison: PoisonMessageError) -> None:
        # Parked before the host completes the message: if parking fails, this raises, the
        # message is redelivered, and parking is tried again. Never completed and lost.
        logger.error(
            "dead-lettering message %s: %s: %s",
            message.message_id,
            poison.reason,
            poison.description,
            extra={"messageId": message.message_id, "reason": poison.reason},
        )
        await self._dead_letters.dead_letter(message.to_queue_message(), poison.reason, poison.description)
        self._metrics.events_dead_lettered.add(1, {"reason": poison.reason})


@dataclass(slots=True)
class _Pending:
    """A decoded, scored event of a batch, waiting to be stored."""

    position: int
    envelope: Envelope
    stored_event: StoredEvent
    span: trace.Span
