"""The stored event: what the process stage writes to the event store, one document per event.

The document is the producer's event, flattened so `tenantId` (the partition key) and `id`
(= `eventId`; with `tenantId`, the idempotency key) are top-level, plus what the pipeline learned about it:
`enrichment` (parsed user agent, anonymised client network, receive and process times) and
`fraud` (score, verdict, reasons). Plain pydantic, no Azure import; both event-store adapters
and the read endpoint speak this shape.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.domain.envelope import Envelope

__all__ = [
    "DOCUMENT_SCHEMA_VERSION",
    "Enrichment",
    "FraudReason",
    "FraudResult",
    "ParsedUserAgent",
    "StoredEvent",
    "build_stored_event",
]

DOCUMENT_SCHEMA_VERSION: Final = 1


class ParsedUserAgent(BaseModel):
    """The user agent as a maintained parser reads it."""

    # Written inline in each class: the pydantic mypy plugin reads only a literal config.
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    browser: str | None = None
    browser_version: str | None = Field(None, alias="browserVersion")
    os: str | None = None
    os_version: str | None = Field(None, alias="osVersion")
    device: str | None = None
    is_bot: bool = Field(False, alias="isBot")


class Enrichment(BaseModel):
    """What the process stage adds to every event."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    client_network: str = Field(
        alias="clientNetwork",
        description="The client IP anonymised to its network (IPv4 /24, IPv6 /48), e.g. 203.0.113.0/24.",
    )
    user_agent: str | None = Field(None, alias="userAgent", description="The User-Agent header as received.")
    agent: ParsedUserAgent | None = None
    received_at: AwareDatetime = Field(alias="receivedAt", description="When ingest accepted the event.")
    enqueued_at: AwareDatetime | None = Field(None, alias="enqueuedAt", description="When the broker took it.")
    processed_at: AwareDatetime = Field(alias="processedAt", description="When the process stage scored it.")
    queue_latency_ms: float = Field(
        alias="queueLatencyMs", ge=0, description="processedAt minus receivedAt, in milliseconds."
    )


class FraudReason(BaseModel):
    """One rule that fired."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    rule: str = Field(description="The rule's id, e.g. ip-velocity.")
    code: str = Field(description="The rule's reason code, e.g. VELOCITY_IP_MINUTE.")
    weight: float = Field(ge=0, le=1)
    description: str


class FraudResult(BaseModel):
    """The fraud verdict that travels with the event."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    score: float = Field(ge=0, le=1)
    suspicious: bool
    reasons: tuple[FraudReason, ...] = ()


class StoredEvent(BaseModel):
    """One stored event document (JSON names are the aliases)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    id: str = Field(description="= eventId: the document id; with tenantId, the idempotency key.")
    event_id: str = Field(alias="eventId")
    tenant_id: str = Field(alias="tenantId", description="The partition key.")
    event_type: str = Field(alias="eventType")
    timestamp: AwareDatetime
    correlation_id: str | None = Field(None, alias="correlationId")
    user_id: str | None = Field(None, alias="userId")
    session_id: str | None = Field(None, alias="sessionId")
    url: str | None = None
    properties: dict[str, Any] | None = None
    anonymous_id: str | None = Field(None, alias="anonymousId")
    name: str | None = None
    group_id: str | None = Field(None, alias="groupId")
    previous_id: str | None = Field(None, alias="previousId")
    traits: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    original_timestamp: AwareDatetime | None = Field(None, alias="originalTimestamp")
    sent_at: AwareDatetime | None = Field(None, alias="sentAt")
    enrichment: Enrichment
    fraud: FraudResult
    trace_context: dict[str, str] = Field(default_factory=dict, alias="traceContext")
    document_version: Literal[1] = Field(DOCUMENT_SCHEMA_VERSION, alias="documentVersion")

    def to_document(self) -> dict[str, Any]:
        """The JSON-ready document (camelCase names, absent optional fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> StoredEvent:
        """Read a stored document back, ignoring the store's own fields (`_rid`, `_etag`, `_ts`, ...)."""
        return cls.model_validate({key: value for key, value in document.items() if not key.startswith("_")})


def build_stored_event(envelope: Envelope, enrichment: Enrichment, fraud: FraudResult) -> StoredEvent:
    """The document for one queued event: the event as sent, plus what the pipeline learned.

    The event must carry its id (ingest always sets one); a timestamp the producer left out
    is the receive time, as the contract says.
    """
    event = envelope.event
    if event.event_id is None:
        raise ValueError("the queued event has no eventId")
    event_id = str(event.event_id)
    return StoredEvent(
        id=event_id,
        event_id=event_id,
        tenant_id=event.tenant_id,
        event_type=event.event_type,
        timestamp=event.timestamp or envelope.received_at,
        correlation_id=event.correlation_id,
        user_id=event.user_id,
        session_id=event.session_id,
        url=event.url,
        properties=event.properties,
        anonymous_id=event.anonymous_id,
        name=event.name,
        group_id=event.group_id,
        previous_id=event.previous_id,
        traits=event.traits,
        context=event.context,
        original_timestamp=event.original_timestamp,
        sent_at=event.sent_at,
        enrichment=enrichment,
        fraud=fraud,
        trace_context=envelope.trace_context,
    )
