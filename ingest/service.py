"""The ingest use case: admit, limit, validate, enqueue. No HTTP and no Azure in here.

It returns an `IngestOutcome` or raises an `IngestError` (`ingest.errors`); the HTTP edge
(`ingest.http`) turns either into a status, headers and a body. It records the stage's
metrics itself: events accepted and rejected, requests refused by a limit.

Order matters: cheap refusals that need no state come first (media type, size), then parsing
(a request costs its number of events), then the rate limits, then per-event validation, and the
events are acknowledged only after the publisher returned, that is once they are durably
queued.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from opentelemetry import propagate

from ingest.errors import InvalidEventsError, RateLimitedError, UnavailableError
from ingest.rate_limiter import RateLimitDecision, RateLimiter
from ingest.validation import (
    FieldError,
    ParsedBody,
    parse_body,
    require_body_within_limit,
    require_json_content_type,
    validate_event,
)
from shared.domain.client_identity import ClientIdentity, ClientKeyer
from shared.domain.envelope import Envelope, to_queue_message
from shared.domain.events import Event
from shared.ports import EventPublisher, PortError
from shared.telemetry import IngestMetrics

__all__ = ["EventResult", "IngestOutcome", "IngestRequest", "IngestService"]

logger = logging.getLogger(__name__)

RETRY_AFTER_UNAVAILABLE_SECONDS = 5


@dataclass(frozen=True, slots=True)
class IngestRequest:
    """What the ingest use case needs from an HTTP request."""

    body: bytes
    content_type: str | None
    client_ip: str
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class EventResult:
    index: int
    event_id: str | None
    errors: list[FieldError]

    @property
    def accepted(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, object]:
        if self.accepted:
            return {"index": self.index, "status": "accepted", "eventId": self.event_id}
        return {"index": self.index, "status": "rejected", "errors": [e.to_dict() for e in self.errors]}


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    """The request was accepted: its accepted events are durably queued; `results` has one entry per event."""

    results: list[EventResult]
    rate_limit: RateLimitDecision

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.results if r.accepted)

    @property
    def rejected(self) -> int:
        return len(self.results) - self.accepted


class IngestService:
    """Turns one HTTP request's body into queued events."""

    def __init__(
        self,
        limiter: RateLimiter,
        publisher: EventPublisher,
        keyer: ClientKeyer,
        metrics: IngestMetrics,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._limiter = limiter
        self._publisher = publisher
        self._keyer = keyer
        self._metrics = metrics
        self._clock = clock

    async def ingest(self, request: IngestRequest) -> IngestOutcome:
        """Accept what is valid; raise an `IngestError` for a request that fails as a whole.

        Each queued event carries the current trace context (the caller's span, under the
        host's request activity), so its processing continues the same trace.
        """
        require_json_content_type(request.content_type)
        require_body_within_limit(len(request.body))
        # From here on only the client's keyed hash and network are kept: never its address.
        client = self._keyer.identify(request.client_ip)
        # Parsed before limiting: a request costs its number of events. A body that does not
        # parse costs one, so a flood of garbage is limited like any other.
        # Any failure, not only a 4xx: whatever a body does to the parser, its sender is
        # limited before the failure is answered.
        parsed: ParsedBody | Exception
        try:
            parsed = parse_body(request.body)
        except Exception as exc:
            parsed = exc
        decision = await self._limit(client.key, 1 if isinstance(parsed, Exception) else len(parsed.items))
        if isinstance(parsed, Exception):
            raise parsed
        received_at = self._clock()
        events: list[Event] = []
        results: list[EventResult] = []
        for index, item in enumerate(parsed.items):
            validated = validate_event(item, received_at=received_at, measure_size=parsed.is_batch)
            if isinstance(validated, Event):
                events.append(validated)
                results.append(EventResult(index, str(validated.event_id), []))
            else:
                results.append(EventResult(index, None, validated))
        if not events:
            raise InvalidEventsError(
                "no event was accepted", details=[r.to_dict() for r in results], rate_limit=decision
            )
        await self._enqueue(events, request, client, received_at, decision)
        outcome = IngestOutcome(results, decision)
        self._metrics.events_ingested.add(outcome.accepted, {"outcome": "accepted"})
        if outcome.rejected:
            self._metrics.events_ingested.add(outcome.rejected, {"outcome": "rejected"})
        return outcome

    async def _limit(self, client_key: str, cost: int) -> RateLimitDecision:
        try:
            decision = await self._limiter.admit(client_key, cost)
        except PortError as exc:
            logger.error("rate-limit store unavailable: %s", exc)
            raise UnavailableError(
                "the rate limiter is temporarily unavailable; retry later",
                code="rate_limiter_unavailable",
                retry_after_seconds=RETRY_AFTER_UNAVAILABLE_SECONDS,
            ) from exc
        if not decision.allowed:
            scope = (
                f"this client ({decision.limit} events burst; this request has {cost})"
                if decision.refused_by == "ip"
                else "the service as a whole"
            )
            refused = RateLimitedError(
                f"rate limit exceeded for {scope}; retry after {decision.retry_after_seconds} s", decision=decision
            )
            self._metrics.rate_limit_rejections.add(1, {"limit": refused.limit})
            raise refused
        return decision

    async def _enqueue(
        self,
        events: list[Event],
        request: IngestRequest,
        client: ClientIdentity,
        received_at: datetime,
        decision: RateLimitDecision,
    ) -> None:
        trace_context: dict[str, str] = {}
        propagate.inject(trace_context)
        messages = [
            to_queue_message(
                Envelope(
                    event=event,
                    received_at=received_at,
                    client_network=client.network,
                    client_key=client.key,
                    user_agent=request.user_agent,
                    ip_requests_last_minute=decision.requests_last_minute,
                    trace_context=trace_context,
                )
            )
            for event in events
        ]
        try:
            await self._publisher.publish(messages)
        except PortError as exc:
            logger.error("queue unavailable, %d events refused: %s", len(messages), exc)
            raise UnavailableError(
                "the event queue is temporarily unavailable; nothing was accepted, retry later",
                code="queue_unavailable",
                retry_after_seconds=RETRY_AFTER_UNAVAILABLE_SECONDS,
            ) from exc
