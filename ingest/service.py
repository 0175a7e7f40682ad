"""The ingest use case: admit, limit, validate, enqueue. No HTTP and no Azure in here.

It returns an `IngestOutcome` or raises an `IngestError` (`ingest.errors`); the HTTP edge
(`ingest.http`) turns either into a status, headers and a body. It records the stage's
metrics itself: events accepted and rejected, requests refused by a limit.

Order matters: cheap refusals that need no state come first (media type, size, a missing
write key where keys are required), then parsing (a request costs its number of events), then
the client and global limits, then the key (checked against the registry, cached), the key's
origin binding and its tenant's quota, then per-event validation (an event naming another
tenant than the key's is rejected), and the events are acknowledged only after the publisher
returned, that is once they are durably queued.

Without `keys_required` (the embedded backend's open mode) a request without a key is taken
for the tenant its body names, as it always was, unless it comes from a web page (it carries
an `Origin` header); a request with a key is checked in full.

(Near 400 lines: the one use case's steps in their order, read top to bottom; what is kept of
each request for watching lives in `ingest.live_recording`.)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from opentelemetry import propagate, trace

from ingest.credentials import PresentedKey, body_key, rejection_error
from ingest.errors import (
    ForbiddenError,
    IngestError,
    InvalidEventsError,
    RateLimitedError,
    UnauthorizedError,
    UnavailableError,
)
from ingest.live_recording import EVENTS_API, LiveRecorder, RequestProgress, StatusOf
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
from shared.ports import EventPublisher, LiveEventLog, PortError
from shared.telemetry import IngestMetrics
from shared.write_key_auth import KeyRejectedError, Producer

__all__ = [
    "Authenticate",
    "BodyReader",
    "EventResult",
    "IngestOutcome",
    "IngestRequest",
    "IngestService",
    "read_json_body",
]

logger = logging.getLogger(__name__)

RETRY_AFTER_UNAVAILABLE_SECONDS = 5


@dataclass(frozen=True, slots=True)
class IngestRequest:
    """What the ingest use case needs from an HTTP request."""

    body: bytes
    content_type: str | None
    client_ip: str
    user_agent: str | None = None
    write_key: PresentedKey | None = None
    """The key the request presents in its `Authorization` header or URL (`ingest.credentials`)."""
    origin: str | None = None
    """The `Origin` header: a browser key is only good from the origins it is bound to."""


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
    producer: Producer | None = None
    """Who sent the events, by its write key; None for a request without a key (open mode)."""

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.results if r.accepted)

    @property
    def rejected(self) -> int:
        return len(self.results) - self.accepted


Authenticate = Callable[[str], Awaitable[Producer]]
"""Checks a presented key: the producer it proves, or `KeyRejectedError`; `PortError` when the registry is down."""

BodyReader = Callable[["IngestRequest"], ParsedBody]
"""Reads a request's body into items (and a key it may carry); raises an `IngestError` for a body it cannot read."""


def read_json_body(request: IngestRequest) -> ParsedBody:
    """Our own API's body: `application/json`, at most 1 MiB, one event or a batch."""
    require_json_content_type(request.content_type)
    require_body_within_limit(len(request.body))
    return parse_body(request.body)


def _parse_json_body(request: IngestRequest) -> ParsedBody:
    # `read_json_body` once its media type and size were checked (before anything was charged).
    return parse_body(request.body)


def _record_producer(producer: Producer) -> None:
    """Put the key's tenant and id (never the key) on the request's span."""
    span = trace.get_current_span()
    span.set_attribute("cloudscale.tenant_id", producer.tenant_id)
    span.set_attribute("cloudscale.write_key_id", producer.key_id)


def _shown_origin(origin: str | None) -> str:
    if origin is None:
        return "(none: no Origin header)"
    return repr(origin[:200])


class IngestService:
    """Turns one HTTP request's body into queued events."""

    def __init__(
        self,
        limiter: RateLimiter,
        publisher: EventPublisher,
        keyer: ClientKeyer,
        metrics: IngestMetrics,
        *,
        authenticate: Authenticate | None = None,
        keys_required: bool = False,
        tenant_events_per_minute: int = 60_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        live_events: LiveEventLog | None = None,
        status_of: StatusOf = lambda _error: 400,
    ) -> None:
        """`authenticate`: checks a presented key against the registry (`WriteKeyAuthenticator.authenticate`);
        without it every key is refused as unknown. `keys_required`: refuse a request without a
        key (always on Azure); otherwise such a request is taken for the tenant its body names.
        `tenant_events_per_minute`: the quota of a tenant the registry gives none.
        `live_events`: where each request's items are kept for watching (`ingest.live_recording`;
        None on Azure); `status_of`: the HTTP status a refusal is answered with, kept with them."""
        self._limiter = limiter
        self._publisher = publisher
        self._keyer = keyer
        self._metrics = metrics
        self._authenticate = authenticate
        self._keys_required = keys_required
        self._tenant_events_per_minute = tenant_events_per_minute
        self._clock = clock
        self._recorder = LiveRecorder(live_events, metrics.events_rejected, status_of, clock)

    @property
    def keys_required(self) -> bool:
        """Whether a request without a write key is refused."""
        return self._keys_required

    def _require_keyless_allowed(self, request: IngestRequest) -> None:
        """Refuse a request without a key, unless open mode takes it."""
        if self._keys_required:
            # No key at all: refused before any I/O, so keyless floods cost nothing but parsing.
            raise UnauthorizedError("a write key is required: send 'Authorization: Bearer <key>'", code="missing_key")
        if request.origin is not None:
            # Open mode is for tools on the developer's machine (curl, SDKs, the load generator),
            # which send no Origin. A browser always does on a POST, and any page the developer
            # visits could post a text/plain body to the loopback host without a preflight: a
            # page writes only with a browser key bound to its origin.
            raise UnauthorizedError(
                "a request from a web page needs a browser key bound to its origin, even in open mode: "
                "send 'Authorization: Bearer <browser key>' or ?writeKey=<browser key>",
                code="missing_key",
            )

    async def ingest(self, request: IngestRequest, *, read_body: BodyReader | None = None) -> IngestOutcome:
        """Accept what is valid; raise an `IngestError` for a request that fails as a whole.

        `read_body` reads the body (default: our own JSON API, `read_json_body`); the
        Segment-compatible API passes its own, which names its API by an `api` attribute. Each
        queued event carries the current trace context (the caller's span, under the host's
        request activity), so its processing continues the same trace. Either way, the
        request's items are kept for watching and its rejected events counted (`LiveRecorder`).
        """
        api = str(getattr(read_body, "api", EVENTS_API))
        progress = RequestProgress()
        try:
            outcome = await self._ingest(request, read_body, progress)
        except IngestError as error:
            self._recorder.refused(api, error, progress)
            raise
        self._recorder.accepted(api, progress)
        return outcome

    async def _ingest(
        self, request: IngestRequest, read_body: BodyReader | None, progress: RequestProgress
    ) -> IngestOutcome:
        if read_body is None:
            # Refusals that need nothing but the headers, before anything is charged.
            require_json_content_type(request.content_type)
            require_body_within_limit(len(request.body))
            read_body = _parse_json_body
        # From here on only the client's keyed hash and network are kept: never its address.
        client = self._keyer.identify(request.client_ip)
        # Parsed before limiting: a request costs its number of events. A body that does not
        # parse costs one, so a flood of garbage is limited like any other.
        # Any failure, not only a 4xx: whatever a body does to the parser, its sender is
        # limited before the failure is answered.
        parsed: ParsedBody | Exception
        try:
            parsed = read_body(request)
        except Exception as exc:
            parsed = exc
        else:
            progress.items = parsed.items
        presented = self._presented_key(request, parsed)
        if presented is None:
            self._require_keyless_allowed(request)
        decision = await self._limit(client.key, 1 if isinstance(parsed, Exception) else len(parsed.items))
        if isinstance(parsed, Exception):
            raise parsed
        producer = await self._producer(presented, request.origin) if presented is not None else None
        if producer is not None:
            _record_producer(producer)
            progress.tenant_id = producer.tenant_id
            tenant = await self._limit_tenant(producer, len(parsed.items))
            # The headers report the limit closest to refusing: both count events.
            decision = tenant if tenant.remaining < decision.remaining else decision
        received_at = progress.received_at = self._clock()
        tenant_id = producer.tenant_id if producer is not None else None
        events, results = _validate(parsed, received_at, tenant_id, progress)
        attributes = {"tenant": tenant_id} if tenant_id is not None else {}
        if not events:
            raise InvalidEventsError(
                "no event was accepted", details=[r.to_dict() for r in results], rate_limit=decision
            )
        await self._enqueue(events, request, client, received_at, decision)
        outcome = IngestOutcome(results, decision, producer)
        self._metrics.events_ingested.add(outcome.accepted, {"outcome": "accepted", **attributes})
        if outcome.rejected:
            self._metrics.events_ingested.add(outcome.rejected, {"outcome": "rejected", **attributes})
        return outcome

    @staticmethod
    def _presented_key(request: IngestRequest, parsed: ParsedBody | Exception) -> PresentedKey | None:
        """The request's key: from its headers or URL, else from its body (browser keys only)."""
        in_body = None if isinstance(parsed, Exception) else parsed.write_key
        if request.write_key is None:
            return body_key(in_body) if in_body else None
        if in_body and in_body != request.write_key.key:
            raise UnauthorizedError(
                "the body's writeKey is not the key of the Authorization header; send one key", code="invalid_key"
            )
        return request.write_key

    async def _producer(self, presented: PresentedKey, origin: str | None) -> Producer:
        """Who the key proves, allowed from `origin`; an `IngestError` when not."""
        if self._authenticate is None:
            raise UnauthorizedError("the write key is not valid", code="invalid_key")
        try:
            producer = await self._authenticate(presented.key)
        except KeyRejectedError as rejected:
            raise rejection_error(rejected) from None
        except PortError as exc:
            logger.error("tenant registry unavailable and the key is not cached: %s", exc)
            raise UnavailableError(
                "the tenant registry is temporarily unavailable; retry later",
                code="registry_unavailable",
                retry_after_seconds=RETRY_AFTER_UNAVAILABLE_SECONDS,
            ) from exc
        if not producer.allows_origin(origin):
            raise ForbiddenError(
                f"write key {producer.key_id} may not be used from origin {_shown_origin(origin)}",
                code="origin_not_allowed",
            )
        return producer

    async def _limit_tenant(self, producer: Producer, cost: int) -> RateLimitDecision:
        quota = producer.events_per_minute or self._tenant_events_per_minute
        try:
            decision = await self._limiter.admit_tenant(producer.tenant_id, cost, quota)
        except PortError as exc:
            raise _limiter_unavailable(exc) from exc
        if not decision.allowed:
            refused = RateLimitedError(
                f"tenant {producer.tenant_id!r} is over its quota of {decision.limit} events a minute "
                f"(this request has {cost}); retry after {decision.retry_after_seconds} s",
                decision=decision,
            )
            self._metrics.rate_limit_rejections.add(1, {"limit": "tenant", "tenant": producer.tenant_id})
            raise refused
        return decision

    async def _limit(self, client_key: str, cost: int) -> RateLimitDecision:
        try:
            decision = await self._limiter.admit(client_key, cost)
        except PortError as exc:
            raise _limiter_unavailable(exc) from exc
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


def _validate(
    parsed: ParsedBody, received_at: datetime, tenant_id: str | None, progress: RequestProgress
) -> tuple[list[Event], list[EventResult]]:
    """Each item validated: the accepted events, and one result per item (noted in `progress`)."""
    events: list[Event] = []
    results: list[EventResult] = []
    for index, item in enumerate(parsed.items):
        validated = validate_event(item, received_at=received_at, measure_size=parsed.is_batch, tenant_id=tenant_id)
        if isinstance(validated, Event):
            events.append(validated)
            progress.events[index] = validated
            results.append(EventResult(index, str(validated.event_id), []))
        else:
            progress.item_errors[index] = validated
            results.append(EventResult(index, None, validated))
    return events, results


def _limiter_unavailable(exc: PortError) -> UnavailableError:
    """A 503 for a rate-limit store that failed (either limit): nothing was accepted, retry soon."""
    logger.error("rate-limit store unavailable: %s", exc)
    return UnavailableError(
        "the rate limiter is temporarily unavailable; retry later",
        code="rate_limiter_unavailable",
        retry_after_seconds=RETRY_AFTER_UNAVAILABLE_SECONDS,
    )
