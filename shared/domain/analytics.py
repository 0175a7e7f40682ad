"""The analytics row: one flat record per stored event, the shape of the `Events` table.

Both analytics sinks (Data Explorer and the embedded store) take these rows; the column
names are Data Explorer's (PascalCase) and the JSON ingestion mapping reads the same names,
so a row serialised with `to_json_dict` is exactly one line of the MULTIJSON body.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from shared.domain.privacy import SubjectField
from shared.domain.stored_event import StoredEvent

__all__ = ["ANALYTICS_COLUMNS", "SUBJECT_COLUMNS", "AnalyticsRow", "to_analytics_row"]


@dataclass(frozen=True, slots=True)
class AnalyticsRow:
    """One event as analysts query it."""

    event_id: str
    tenant_id: str
    event_type: str
    timestamp: datetime
    received_at: datetime
    processed_at: datetime
    stored_at: datetime
    """When the event store committed it (Cosmos DB `_ts`; the embedded store's commit time)."""
    correlation_id: str | None
    user_id: str | None
    session_id: str | None
    url: str | None
    client_network: str
    browser: str | None
    os: str | None
    device: str | None
    is_bot: bool
    fraud_score: float
    suspicious: bool
    fraud_reasons: tuple[str, ...]
    """The reason codes of the rules that fired."""
    properties: dict[str, Any] | None
    # The fields the Segment-compatible API brings (any producer may send them); empty when absent.
    anonymous_id: str | None = None
    name: str | None = None
    """A track call's event name, a page's or screen's name."""
    group_id: str | None = None
    previous_id: str | None = None
    traits: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    original_timestamp: datetime | None = None
    """The device's clock when the event happened, before the clock-skew correction."""
    sent_at: datetime | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """The row with its column names and JSON values (datetimes as RFC 3339 UTC)."""
        return {
            "EventId": self.event_id,
            "TenantId": self.tenant_id,
            "EventType": self.event_type,
            "Timestamp": _iso(self.timestamp),
            "ReceivedAt": _iso(self.received_at),
            "ProcessedAt": _iso(self.processed_at),
            "StoredAt": _iso(self.stored_at),
            "CorrelationId": self.correlation_id,
            "UserId": self.user_id,
            "SessionId": self.session_id,
            "Url": self.url,
            "ClientNetwork": self.client_network,
            "Browser": self.browser,
            "Os": self.os,
            "Device": self.device,
            "IsBot": self.is_bot,
            "FraudScore": self.fraud_score,
            "Suspicious": self.suspicious,
            "FraudReasons": list(self.fraud_reasons),
            "Properties": self.properties,
            "AnonymousId": self.anonymous_id,
            "Name": self.name,
            "GroupId": self.group_id,
            "PreviousId": self.previous_id,
            "Traits": self.traits,
            "Context": self.context,
            "OriginalTimestamp": None if self.original_timestamp is None else _iso(self.original_timestamp),
            "SentAt": None if self.sent_at is None else _iso(self.sent_at),
        }


ANALYTICS_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("EventId", "string"),
    ("TenantId", "string"),
    ("EventType", "string"),
    ("Timestamp", "datetime"),
    ("ReceivedAt", "datetime"),
    ("ProcessedAt", "datetime"),
    ("StoredAt", "datetime"),
    ("CorrelationId", "string"),
    ("UserId", "string"),
    ("SessionId", "string"),
    ("Url", "string"),
    ("ClientNetwork", "string"),
    ("Browser", "string"),
    ("Os", "string"),
    ("Device", "string"),
    ("IsBot", "bool"),
    ("FraudScore", "real"),
    ("Suspicious", "bool"),
    ("FraudReasons", "dynamic"),
    ("Properties", "dynamic"),
    ("AnonymousId", "string"),
    ("Name", "string"),
    ("GroupId", "string"),
    ("PreviousId", "string"),
    ("Traits", "dynamic"),
    ("Context", "dynamic"),
    ("OriginalTimestamp", "datetime"),
    ("SentAt", "datetime"),
)
"""The `Events` table's columns and their Data Explorer types, in order.

New columns go at the end: Data Explorer's `.create-merge table` appends the ones a table lacks,
and the embedded store adds them to an existing file the same way. Every `datetime` column but
the first four may be empty (JSON null)."""

SUBJECT_COLUMNS: Final[dict[SubjectField, str]] = {"userId": "UserId", "anonymousId": "AnonymousId"}
"""The column holding each kind of data-subject identifier (with `TenantId`, a subject's rows)."""


def to_analytics_row(event: StoredEvent, stored_at: datetime) -> AnalyticsRow:
    """Flatten a stored event into its analytics row."""
    enrichment = event.enrichment
    agent = enrichment.agent
    return AnalyticsRow(
        event_id=event.event_id,
        tenant_id=event.tenant_id,
        event_type=event.event_type,
        timestamp=event.timestamp,
        received_at=enrichment.received_at,
        processed_at=enrichment.processed_at,
        stored_at=stored_at,
        correlation_id=event.correlation_id,
        user_id=event.user_id,
        session_id=event.session_id,
        url=event.url,
        client_network=enrichment.client_network,
        browser=agent.browser if agent else None,
        os=agent.os if agent else None,
        device=agent.device if agent else None,
        is_bot=agent.is_bot if agent else False,
        fraud_score=event.fraud.score,
        suspicious=event.fraud.suspicious,
        fraud_reasons=tuple(reason.code for reason in event.fraud.reasons),
        properties=event.properties,
        anonymous_id=event.anonymous_id,
        name=event.name,
        group_id=event.group_id,
        previous_id=event.previous_id,
        traits=event.traits,
        context=event.context,
        original_timestamp=event.original_timestamp,
        sent_at=event.sent_at,
    )


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
