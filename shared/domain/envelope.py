"""The queue envelope: what ingest puts on the queue for the process stage.

An accepted event travels with what only the receiving side knows: when it arrived, from which
network (anonymised: IPv4 /24, IPv6 /48) and which client (a keyed hash, see
`shared.domain.client_identity`), the client's recent request count (the velocity signal
fraud scoring reads) and the W3C trace context, so one trace spans HTTP, queue and storage.
Never the client's address: the queue and its dead letters are stores too.

Version 1 carried the raw `clientIp`; `process.decoding` still reads it (upgrading it to
version 2 on the way in), so messages queued before an upgrade are processed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.domain.events import Event

__all__ = [
    "MAX_MESSAGE_ID_LENGTH",
    "SCHEMA_VERSION",
    "Envelope",
    "QueueMessage",
    "event_message_id",
    "to_queue_message",
]

SCHEMA_VERSION: Final = 2

MAX_MESSAGE_ID_LENGTH: Final = 128
"""Service Bus refuses a longer message id (`MaxMessageIdLength` in the SDKs)."""


class Envelope(BaseModel):
    """Version 2 of the queue message body (JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_version: Literal[2] = Field(SCHEMA_VERSION, alias="schemaVersion")
    event: Event
    received_at: AwareDatetime = Field(alias="receivedAt")
    client_network: str = Field(alias="clientNetwork", max_length=64)
    """The anonymised network (`203.0.113.0/24`, `2001:db8:1::/48`) or `unknown`."""
    client_key: str = Field(alias="clientKey", min_length=1, max_length=64)
    """The keyed hash of the client: the velocity and distinct-users signals count by it."""
    user_agent: str | None = Field(None, alias="userAgent")
    ip_requests_last_minute: int = Field(alias="ipRequestsLastMinute", ge=0)
    trace_context: dict[str, str] = Field(default_factory=dict, alias="traceContext")

    def to_json(self) -> bytes:
        """Serialise with camelCase names, leaving out absent optional fields."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """A broker-neutral message: what every publisher adapter knows how to send."""

    message_id: str
    body: bytes
    content_type: str = "application/json"
    subject: str | None = None
    correlation_id: str | None = None
    application_properties: dict[str, str | int] = field(default_factory=dict)


def event_message_id(tenant_id: str, event_id: str) -> str:
    """The queue message id of one event: `<tenantId>/<eventId>`.

    An event is (tenantId, eventId): two tenants may send the same eventId, and duplicate
    detection (Service Bus's, and the embedded queue's) must never merge them. A tenant id
    holds no `/` (see `TenantId`), so the id names exactly one pair, and at most
    64 + 1 + 36 characters it stays well inside `MAX_MESSAGE_ID_LENGTH`; an operator reading
    `cloudscale dlq` sees which tenant's event it is.
    """
    return f"{tenant_id}/{event_id}"


def to_queue_message(envelope: Envelope) -> QueueMessage:
    """`message_id` names (tenantId, eventId), so broker-side duplicate detection drops a
    resend of one tenant's event and never another tenant's event with the same id."""
    event = envelope.event
    properties: dict[str, str | int] = {
        "schemaVersion": envelope.schema_version,
        "tenantId": event.tenant_id,
        "eventType": event.event_type,
    }
    properties.update(envelope.trace_context)
    return QueueMessage(
        message_id=event_message_id(event.tenant_id, str(event.event_id)),
        body=envelope.to_json(),
        subject=event.event_type,
        correlation_id=event.correlation_id,
        application_properties=properties,
    )
