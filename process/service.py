"""The process stage's use case: one queue message in, one stored, enriched, scored event out.

`ProcessService.handle` is what the Service Bus trigger calls for each message, on Azure and
under the local host alike. Its contract with the host:

- returns normally: the message is done (stored now, already stored, or parked as poison),
  and the host completes it;
- raises `StoreUnavailableError`: the store stayed down for the whole retry budget; the
  host abandons the message and it is delivered again later (counted against
  `maxDeliveryCount`, so only a store down for many budgets in a row dead-letters it).

Permanently bad messages (see `process.decoding`) are parked in the dead-letter sink with
their reason and then completed: on Azure the Python trigger cannot dead-letter a message
itself (see docs/tradeoffs.md), and raising would only burn deliveries and lose the reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from opentelemetry import propagate, trace

from process.decoding import PoisonMessageError, decode_envelope
from process.store_guard import StoreGuard
from shared.domain.enrichment import client_key, enrich
from shared.domain.envelope import Envelope, QueueMessage
from shared.domain.fraud import DistinctUsersTracker, FraudRuleSet, FraudSignals
from shared.domain.stored_event import FraudResult, StoredEvent, build_stored_event
from shared.ports import DeadLetterSink, EventStore
from shared.telemetry import ProcessMetrics

__all__ = ["DeliveredMessage", "ProcessOutcome", "ProcessService"]

logger = logging.getLogger(__name__)
security_log = logging.getLogger("cloudscale.security")
tracer = trace.get_tracer("cloudscale.process")


class ProcessOutcome(Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    """Already stored by an earlier delivery: nothing changed."""
    DEAD_LETTERED = "dead_lettered"


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
    ) -> None:
        self._store = store
        self._dead_letters = dead_letters
        self._guard = guard
        self._rules = rules
        self._users = users
        self._metrics = metrics
        self._clock = clock

    async def handle(self, message: DeliveredMessage) -> ProcessOutcome:
        """Process one delivery; see the module docstring for what returning and raising mean."""
        started = time.perf_counter()
        outcome = "failed"
        try:
            try:
                envelope = decode_envelope(message.body)
            except PoisonMessageError as poison:
                await self._park(message, poison)
                outcome = ProcessOutcome.DEAD_LETTERED.value
                return ProcessOutcome.DEAD_LETTERED
            with tracer.start_as_current_span(
                "process event", context=propagate.extract(envelope.trace_context), kind=trace.SpanKind.CONSUMER
            ):
                result = await self._process(envelope, message)
            outcome = result.value
            return result
        finally:
            self._metrics.processing_duration.record(time.perf_counter() - started, {"outcome": outcome})

    def score(self, envelope: Envelope, message: DeliveredMessage) -> StoredEvent:
        """Enrich and score `envelope` into the document to store (pure but for the clocks and the tracker)."""
        now = self._clock()
        enrichment = enrich(envelope, processed_at=now, enqueued_at=message.enqueued_at)
        distinct_users = (
            # Receive time, not processing time: a backlog drained after an outage, or a
            # replay, must not crowd hours of traffic into one window.
            self._users.observe(
                client_key(envelope.client_ip), envelope.event.user_id, envelope.received_at.timestamp()
            )
            if self._users is not None
            else 0
        )
        signals = FraudSignals.from_envelope(envelope, agent=enrichment.agent, distinct_users_from_ip=distinct_users)
        return build_stored_event(envelope, enrichment, self._rules.evaluate(signals))

    async def _process(self, envelope: Envelope, message: DeliveredMessage) -> ProcessOutcome:
        document = self.score(envelope, message)
        stored = await self._guard.run(lambda: self._store.save(document))
        outcome = ProcessOutcome.STORED if stored else ProcessOutcome.DUPLICATE
        self._metrics.events_processed.add(1, {"outcome": outcome.value})
        if document.fraud.suspicious:
            if stored:
                for reason in document.fraud.reasons:
                    self._metrics.fraud_detected.add(1, {"rule": reason.rule})
            # Alerted on a duplicate too: the first delivery may have stored the event and
            # died before its alert (at least once; the alert says which it was).
            _alert(document, client_key(envelope.client_ip), redelivered=not stored)
        return outcome

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


def _alert(document: StoredEvent, client: str, *, redelivered: bool) -> None:
    """A structured security alert. No raw IP, user id or URL: the hashed client key stands in."""
    fraud: FraudResult = document.fraud
    codes = ",".join(reason.code for reason in fraud.reasons)
    security_log.warning(
        "suspicious event %s tenant=%s score=%.2f reasons=%s client=%s%s",
        document.event_id,
        document.tenant_id,
        fraud.score,
        codes,
        client,
        " (redelivered)" if redelivered else "",
        extra={
            "redelivered": redelivered,
            "alert": "SuspiciousEvent",
            "eventId": document.event_id,
            "tenantId": document.tenant_id,
            "fraudScore": fraud.score,
            "reasonCodes": codes,
            "clientKey": client,
        },
    )
