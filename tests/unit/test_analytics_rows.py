"""The analytics row: every stored-event field lands in its column, and its JSON line is one table row."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from shared.domain.analytics import ANALYTICS_COLUMNS, AnalyticsRow, to_analytics_row
from shared.domain.stored_event import StoredEvent

EVENT_ID = "6f1c2b9e-0d7a-4c51-9a3e-2f8b5d4c1a00"
STORED_AT = datetime(2026, 3, 1, 12, 0, 2, 750_000, tzinfo=UTC)
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
COLUMN_NAMES = [name for name, _ in ANALYTICS_COLUMNS]


def stored_event(**fields: Any) -> StoredEvent:
    """A stored event with every field set; `fields` override (or, set to None, drop) document fields."""
    document: dict[str, Any] = {
        "id": EVENT_ID,
        "eventId": EVENT_ID,
        "tenantId": "acme",
        "eventType": "purchase",
        "timestamp": "2026-03-01T13:59:58+02:00",  # producer's local time: 11:59:58 UTC
        "correlationId": "corr-1",
        "userId": "user-7",
        "sessionId": "session-3",
        "url": "/checkout",
        "properties": {"amount": 42.5, "items": ["sku-1", "sku-2"], "gift": {"wrapped": True}},
        "anonymousId": "anon-9",
        "name": "Order Completed",
        "groupId": "group-2",
        "previousId": "anon-8",
        "traits": {"plan": "pro"},
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"}, "ip": "203.0.113.0/24"},
        "originalTimestamp": "2026-03-01T13:59:57.500+02:00",
        "sentAt": "2026-03-01T13:59:59+02:00",
        "enrichment": {
            "clientNetwork": "203.0.113.0/24",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0",
            "agent": {
                "browser": "Chrome",
                "browserVersion": "131.0",
                "os": "Linux",
                "osVersion": "6.1",
                "device": "Other",
                "isBot": False,
            },
            "receivedAt": "2026-03-01T12:00:00.250000Z",
            "enqueuedAt": "2026-03-01T12:00:00.300000Z",
            "processedAt": "2026-03-01T12:00:01.500000Z",
            "queueLatencyMs": 1250.0,
        },
        "fraud": {
            "score": 0.85,
            "suspicious": True,
            "reasons": [
                {"rule": "ip-velocity", "code": "VELOCITY_IP_MINUTE", "weight": 0.5, "description": "many requests"},
                {"rule": "users-per-ip", "code": "MANY_USERS_PER_IP", "weight": 0.35, "description": "many users"},
            ],
        },
        "traceContext": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    }
    document.update(fields)
    return StoredEvent.from_document({key: value for key, value in document.items() if value is not None})


def test_every_field_of_a_stored_event_lands_in_its_column() -> None:
    # GIVEN a stored event with every optional field set
    event = stored_event()

    # WHEN it is flattened with its commit time
    row = to_analytics_row(event, STORED_AT)

    # THEN each column holds its field: enrichment, parsed agent, fraud reason codes, properties
    assert row == AnalyticsRow(
        event_id=EVENT_ID,
        tenant_id="acme",
        event_type="purchase",
        timestamp=datetime(2026, 3, 1, 11, 59, 58, tzinfo=UTC),
        received_at=datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC),
        processed_at=datetime(2026, 3, 1, 12, 0, 1, 500_000, tzinfo=UTC),
        stored_at=STORED_AT,
        correlation_id="corr-1",
        user_id="user-7",
        session_id="session-3",
        url="/checkout",
        client_network="203.0.113.0/24",
        browser="Chrome",
        os="Linux",
        device="Other",
        is_bot=False,
        fraud_score=0.85,
        suspicious=True,
        fraud_reasons=("VELOCITY_IP_MINUTE", "MANY_USERS_PER_IP"),
        properties={"amount": 42.5, "items": ["sku-1", "sku-2"], "gift": {"wrapped": True}},
        anonymous_id="anon-9",
        name="Order Completed",
        group_id="group-2",
        previous_id="anon-8",
        traits={"plan": "pro"},
        context={"library": {"name": "analytics-python", "version": "2.4.0"}, "ip": "203.0.113.0/24"},
        original_timestamp=datetime(2026, 3, 1, 11, 59, 57, 500_000, tzinfo=UTC),
        sent_at=datetime(2026, 3, 1, 11, 59, 59, tzinfo=UTC),
    )


def test_the_commit_time_is_the_one_given_not_an_event_time() -> None:
    event = stored_event()
    later = STORED_AT + timedelta(hours=3)

    assert to_analytics_row(event, later).stored_at == later


def test_an_event_without_a_parsed_agent_or_optional_fields_leaves_those_columns_empty() -> None:
    # GIVEN a minimal event: no agent, no user/session/url/correlation, no properties, no reasons
    enrichment = stored_event().enrichment.model_dump(mode="json", by_alias=True, exclude={"agent", "user_agent"})
    event = stored_event(
        correlationId=None,
        userId=None,
        sessionId=None,
        url=None,
        properties=None,
        anonymousId=None,
        name=None,
        groupId=None,
        previousId=None,
        traits=None,
        context=None,
        originalTimestamp=None,
        sentAt=None,
        enrichment=enrichment,
        fraud={"score": 0.0, "suspicious": False},
    )

    row = to_analytics_row(event, STORED_AT)

    # THEN the agent's columns are empty and it is not taken for a bot
    assert (row.browser, row.os, row.device, row.is_bot) == (None, None, None, False)
    assert (row.correlation_id, row.user_id, row.session_id, row.url) == (None, None, None, None)
    assert row.properties is None
    assert (row.anonymous_id, row.name, row.group_id, row.previous_id) == (None, None, None, None)
    assert (row.traits, row.context, row.original_timestamp, row.sent_at) == (None, None, None, None)
    assert row.fraud_reasons == ()
    assert (row.fraud_score, row.suspicious) == (0.0, False)
    assert row.client_network == "203.0.113.0/24"


def test_a_bot_user_agent_is_marked_as_a_bot() -> None:
    enrichment = stored_event().enrichment.model_dump(mode="json", by_alias=True)
    enrichment["agent"] = {"browser": "Googlebot", "device": "Spider", "isBot": True}

    row = to_analytics_row(stored_event(enrichment=enrichment), STORED_AT)

    assert (row.browser, row.os, row.device, row.is_bot) == ("Googlebot", None, "Spider", True)


def test_the_json_line_has_exactly_the_table_columns_in_order() -> None:
    record = to_analytics_row(stored_event(), STORED_AT).to_json_dict()

    assert list(record) == COLUMN_NAMES


def test_datetimes_in_the_json_line_are_rfc3339_utc_ending_in_z() -> None:
    # GIVEN an event whose producer timestamp carries a +02:00 offset
    row = to_analytics_row(stored_event(), STORED_AT)

    record = row.to_json_dict()

    datetime_columns = [name for name, kind in ANALYTICS_COLUMNS if kind == "datetime"]
    assert datetime_columns == ["Timestamp", "ReceivedAt", "ProcessedAt", "StoredAt", "OriginalTimestamp", "SentAt"]
    for name in datetime_columns:
        assert RFC3339_UTC.match(record[name]), f"{name}: {record[name]!r}"
    # THEN every instant is kept, and the offset is converted to UTC rather than dropped
    assert record["Timestamp"] == "2026-03-01T11:59:58Z"
    assert record["ReceivedAt"] == "2026-03-01T12:00:00.250000Z"
    assert record["ProcessedAt"] == "2026-03-01T12:00:01.500000Z"
    assert record["StoredAt"] == "2026-03-01T12:00:02.750000Z"
    assert record["OriginalTimestamp"] == "2026-03-01T11:59:57.500000Z"
    assert record["SentAt"] == "2026-03-01T11:59:59Z"
    assert datetime.fromisoformat(record["Timestamp"]) == row.timestamp


def test_a_commit_time_given_in_another_zone_is_written_in_utc() -> None:
    tokyo = timezone(timedelta(hours=9))

    record = to_analytics_row(stored_event(), datetime(2026, 3, 1, 21, 0, tzinfo=tokyo)).to_json_dict()

    assert record["StoredAt"] == "2026-03-01T12:00:00Z"


@pytest.mark.parametrize(
    "event",
    [
        stored_event(),
        stored_event(properties=None, originalTimestamp=None, sentAt=None, fraud={"score": 0, "suspicious": 0}),
    ],
)
def test_json_values_have_their_column_types(event: StoredEvent) -> None:
    record = to_analytics_row(event, STORED_AT).to_json_dict()

    # Only the event's own optional times may be empty; the pipeline's are always set.
    optional_times = {"OriginalTimestamp", "SentAt"}
    expected: dict[str, tuple[type, ...]] = {
        "string": (str, type(None)),
        "datetime": (str,),
        "bool": (bool,),
        "real": (float,),
        "dynamic": (list, dict, type(None)),
    }
    for name, kind in ANALYTICS_COLUMNS:
        allowed = (*expected[kind], type(None)) if name in optional_times else expected[kind]
        assert isinstance(record[name], allowed), f"{name} ({kind}): {record[name]!r}"
    assert isinstance(record["FraudReasons"], list)
    # AND the record is one line of a MULTIJSON ingestion body
    assert orjson.loads(orjson.dumps(record)) == record


def test_the_json_line_carries_reason_codes_and_properties() -> None:
    record = to_analytics_row(stored_event(), STORED_AT).to_json_dict()

    assert record["FraudReasons"] == ["VELOCITY_IP_MINUTE", "MANY_USERS_PER_IP"]
    assert record["Properties"] == {"amount": 42.5, "items": ["sku-1", "sku-2"], "gift": {"wrapped": True}}
    assert (record["IsBot"], record["Suspicious"], record["FraudScore"]) == (False, True, 0.85)
