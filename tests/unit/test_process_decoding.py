"""Queue message bodies: what decodes, and the dead-letter reason for what never will."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import orjson
import pytest

from process.decoding import PoisonMessageError, decode_envelope
from shared.domain.dead_letter_reasons import SCHEMA_INVALID, UNDECODABLE, UNKNOWN_SCHEMA_VERSION


def envelope_body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "schemaVersion": 2,
        "event": {"eventType": "page_view", "tenantId": "acme", "eventId": str(uuid4()), "url": "/home"},
        "receivedAt": "2026-11-24T10:00:00Z",
        "clientNetwork": "203.0.113.0/24",
        "clientKey": "0123456789abcdef0123456789abcdef",
        "userAgent": "Mozilla/5.0",
        "ipRequestsLastMinute": 3,
    }
    body.update(changes)
    return body


def poison_reason(body: bytes) -> PoisonMessageError:
    with pytest.raises(PoisonMessageError) as caught:
        decode_envelope(body)
    return caught.value


def test_a_v1_envelope_decodes() -> None:
    body = envelope_body()
    envelope = decode_envelope(orjson.dumps(body))
    assert envelope.event.tenant_id == "acme"
    assert envelope.ip_requests_last_minute == 3


def test_an_old_timestamp_still_decodes_because_a_replay_is_the_same_event() -> None:
    # GIVEN an event accepted 30 days ago (ingest refuses > 7 days old at receive time)
    old = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    body = envelope_body()
    body["event"] = {**body["event"], "timestamp": old}  # type: ignore[dict-item]
    # THEN the process stage still reads it
    assert decode_envelope(orjson.dumps(body)).event.timestamp is not None


@pytest.mark.parametrize("raw", [b"", b"not json", b"\xff\xfe", b'{"schemaVersion": 1'])
def test_bytes_that_are_not_json_are_undecodable(raw: bytes) -> None:
    assert poison_reason(raw).reason == UNDECODABLE


@pytest.mark.parametrize("raw", [b"[]", b"1", b'"text"', b"null"])
def test_json_that_is_not_an_object_is_undecodable(raw: bytes) -> None:
    error = poison_reason(raw)
    assert error.reason == UNDECODABLE
    assert "not an object" in error.description


@pytest.mark.parametrize("version", [3, 0, "1", "2", None])
def test_an_unknown_schema_version_is_named(version: object) -> None:
    error = poison_reason(orjson.dumps(envelope_body(schemaVersion=version)))
    assert error.reason == UNKNOWN_SCHEMA_VERSION
    assert repr(version) in error.description


def test_a_missing_schema_version_is_an_unknown_version() -> None:
    body = envelope_body()
    del body["schemaVersion"]
    assert poison_reason(orjson.dumps(body)).reason == UNKNOWN_SCHEMA_VERSION


def test_a_schema_invalid_envelope_names_the_fields_but_not_their_values() -> None:
    body = envelope_body(clientKey=None, ipRequestsLastMinute=-1)
    body["event"] = {"eventType": "page_view", "eventId": str(uuid4()), "userId": "secret-user@example.com"}
    error = poison_reason(orjson.dumps(body))
    assert error.reason == SCHEMA_INVALID
    assert "event.tenantId" in error.description
    assert "clientKey" in error.description
    assert "ipRequestsLastMinute" in error.description
    assert "secret-user" not in error.description


def test_an_event_without_an_id_cannot_be_stored_idempotently() -> None:
    body = envelope_body()
    body["event"] = {"eventType": "page_view", "tenantId": "acme"}
    error = poison_reason(orjson.dumps(body))
    assert error.reason == SCHEMA_INVALID
    assert "eventId" in error.description


def test_descriptions_are_bounded() -> None:
    body = envelope_body()
    body["event"] = {f"unknown{i}": i for i in range(200)}
    error = poison_reason(orjson.dumps(body))
    assert len(error.description) <= 1024
    assert "more" in error.description


def test_a_version_1_envelope_is_read_with_its_raw_ip_replaced() -> None:
    body = envelope_body(schemaVersion=1, clientIp="203.0.113.7")
    del body["clientNetwork"], body["clientKey"]

    envelope = decode_envelope(orjson.dumps(body))

    assert envelope.client_network == "203.0.113.0/24"
    assert envelope.client_key == decode_envelope(orjson.dumps(body)).client_key
    assert "203.0.113.7" not in envelope.to_json().decode()


def test_a_version_2_envelope_may_not_carry_a_raw_ip() -> None:
    assert poison_reason(orjson.dumps(envelope_body(clientIp="203.0.113.7"))).reason == SCHEMA_INVALID
