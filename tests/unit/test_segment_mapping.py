"""The Segment mapping table: each call type into our event, the clock-skew correction, and refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ingest.segment.mapping import CALL_TYPES, map_message
from ingest.validation import FieldError
from shared.domain.events import Event

RECEIVED = datetime(2026, 11, 27, 12, 0, 10, tzinfo=UTC)


def mapped(message: dict[str, Any], **options: Any) -> dict[str, Any]:
    result = map_message(message, received_at=RECEIVED, **options)
    assert isinstance(result, dict), result
    return result


def refused(message: Any, **options: Any) -> list[FieldError]:
    result = map_message(message, received_at=RECEIVED, **options)
    assert isinstance(result, list), result
    return result


def fields(errors: list[FieldError]) -> list[tuple[str, str]]:
    return [(error.field, error.type) for error in errors]


def test_a_track_call_from_the_python_sdk_maps_field_by_field() -> None:
    # GIVEN a track call as segment-analytics-python 2.4.0 sends it in a batch
    message = {
        "integrations": {},
        "anonymousId": None,
        "properties": {"plan": "pro"},
        "timestamp": "2026-11-27T12:00:00.000+00:00",
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
        "userId": "u1",
        "type": "track",
        "event": "Signed Up",
        "messageId": "6F1E2B4C-0A3D-4E5F-8A9B-0C1D2E3F4A5B",
    }

    # WHEN mapped with the batch's sentAt
    event = mapped(message, batch_sent_at="2026-11-27T12:00:05.000000+00:00", path="batch[0]")

    # THEN every field has its place, and the event passes our own rules
    assert event == {
        "eventType": "track",
        "eventId": "6F1E2B4C-0A3D-4E5F-8A9B-0C1D2E3F4A5B",
        "userId": "u1",
        "properties": {"plan": "pro"},
        "name": "Signed Up",
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
        "originalTimestamp": "2026-11-27T12:00:00+00:00",
        "sentAt": "2026-11-27T12:00:05+00:00",
        "timestamp": "2026-11-27T12:00:05+00:00",
    }
    validated = Event.model_validate({**event, "tenantId": "acme"}, context={"now": RECEIVED})
    assert validated.event_id == "6f1e2b4c-0a3d-4e5f-8a9b-0c1d2e3f4a5b"  # a UUID is canonicalised


def test_the_timestamp_is_corrected_for_the_device_clock_as_segment_documents() -> None:
    # Segment's own example: originalTimestamp 06:33:31.593, sentAt 06:33:32.900, receivedAt
    # 06:33:36.745 gives timestamp 06:33:35.438.
    received = datetime(2026, 11, 27, 6, 33, 36, 745_000, tzinfo=UTC)
    message = {"type": "track", "event": "e", "userId": "u", "timestamp": "2026-11-27T06:33:31.593Z"}

    result = map_message(message, received_at=received, batch_sent_at="2026-11-27T06:33:32.900Z")

    assert isinstance(result, dict)
    assert datetime.fromisoformat(result["timestamp"]) == datetime(2026, 11, 27, 6, 33, 35, 438_000, tzinfo=UTC)
    assert result["originalTimestamp"] == "2026-11-27T06:33:31.593000+00:00"
    assert result["sentAt"] == "2026-11-27T06:33:32.900000+00:00"


def test_a_message_sentat_wins_over_the_batch_one_and_originaltimestamp_stands_in_for_timestamp() -> None:
    # rudder-sdk-node sends originalTimestamp (no timestamp) and a sentAt per event.
    message = {
        "type": "track",
        "event": "e",
        "anonymousId": "a",
        "originalTimestamp": "2026-11-27T12:00:00Z",
        "sentAt": "2026-11-27T12:00:01Z",
        "channel": "server",
    }

    event = mapped(message, batch_sent_at="2026-11-27T11:00:00Z")

    assert datetime.fromisoformat(event["timestamp"]) == datetime(2026, 11, 27, 12, 0, 9, tzinfo=UTC)
    assert "channel" not in event
    assert "channel" not in event.get("context", {})


def test_without_sentat_the_device_time_is_kept_and_without_either_the_server_fills_it_in() -> None:
    with_time = mapped({"type": "track", "event": "e", "userId": "u", "timestamp": "2026-11-27T11:59:00+01:00"})
    without = mapped({"type": "track", "event": "e", "userId": "u"})

    assert with_time["timestamp"] == "2026-11-27T11:59:00+01:00"
    assert "timestamp" not in without
    assert "sentAt" not in without


def test_a_message_with_both_timestamp_and_originaltimestamp_keeps_both() -> None:
    # A message forwarded from Segment carries its corrected timestamp and the device's time.
    message = {
        "type": "track",
        "event": "e",
        "userId": "u",
        "timestamp": "2026-11-27T12:00:09Z",
        "originalTimestamp": "2026-11-27T11:00:00Z",
    }

    event = mapped(message, batch_sent_at="2026-11-27T11:00:01Z")

    assert event["timestamp"] == "2026-11-27T12:00:09+00:00"
    assert event["originalTimestamp"] == "2026-11-27T11:00:00+00:00"
    assert event["sentAt"] == "2026-11-27T11:00:01+00:00"


def test_a_batch_timestamp_stands_in_for_its_sentat_and_must_agree_with_it() -> None:
    # rudder-sdk-node sends the batch's `timestamp` and `sentAt`, each read from the clock at flush.
    message = {"type": "track", "event": "e", "userId": "u", "originalTimestamp": "2026-11-27T12:00:00Z"}

    alone = mapped(message, batch_timestamp="2026-11-27T12:00:01Z")
    agreeing = mapped(message, batch_sent_at="2026-11-27T12:00:01Z", batch_timestamp="2026-11-27T12:00:01.001Z")
    errors = refused(message, batch_sent_at="2026-11-27T12:00:01Z", batch_timestamp="2020-01-01T00:00:00Z")

    assert alone["sentAt"] == "2026-11-27T12:00:01+00:00"
    assert agreeing["sentAt"] == "2026-11-27T12:00:01+00:00"
    assert fields(errors) == [("timestamp", "timestamp_conflict")]


@pytest.mark.parametrize("sent_at", ["message", "batch"])
def test_a_clock_skew_correction_beyond_representable_times_is_a_field_error(sent_at: str) -> None:
    message = {"type": "track", "event": "e", "userId": "u", "originalTimestamp": "9999-12-31T00:00:00Z"}
    if sent_at == "message":
        errors = refused({**message, "sentAt": "0001-01-02T00:00:00Z"}, path="batch[0]")
        assert fields(errors) == [("batch[0].sentAt", "datetime")]
    else:
        errors = refused(message, batch_sent_at="0001-01-02T00:00:00Z", path="batch[0]")
        assert fields(errors) == [("sentAt", "datetime")]


@pytest.mark.parametrize("call", ["page", "screen"])
def test_page_and_screen_map_their_name_and_category(call: str) -> None:
    event = mapped(
        {"anonymousId": "a1", "name": "Home", "category": "Docs", "properties": {"path": "/"}}, call_type=call
    )

    assert (event["eventType"], event["name"]) == (call, "Home")
    assert event["properties"] == {"path": "/", "category": "Docs"}


def test_a_category_that_contradicts_properties_category_is_refused_not_dropped() -> None:
    errors = refused({"anonymousId": "a", "category": "A", "properties": {"category": "B"}}, call_type="page")

    assert fields(errors) == [("category", "category_conflict")]


def test_a_page_takes_its_url_from_the_context_else_from_its_properties() -> None:
    from_context = mapped(
        {"anonymousId": "a", "context": {"page": {"url": "https://x.test/a"}}, "properties": {"url": "/b"}},
        call_type="page",
    )
    from_properties = mapped({"anonymousId": "a", "properties": {"url": "https://x.test/b"}}, call_type="page")

    assert from_context["url"] == "https://x.test/a"
    assert from_properties["url"] == "https://x.test/b"


def test_identify_group_and_alias_map_their_ids_and_traits() -> None:
    identify = mapped({"userId": "u1", "traits": {"email": "x@y.z"}}, call_type="identify")
    group = mapped({"userId": "u1", "groupId": "g1", "traits": {"size": 3}}, call_type="group")
    alias = mapped({"previousId": "a1", "userId": "u1"}, call_type="alias")

    assert identify == {"eventType": "identify", "userId": "u1", "traits": {"email": "x@y.z"}}
    assert group == {"eventType": "group", "userId": "u1", "groupId": "g1", "traits": {"size": 3}}
    assert alias == {"eventType": "alias", "userId": "u1", "previousId": "a1"}


def test_numbers_given_as_ids_become_text_as_segments_sdks_make_them() -> None:
    event = mapped({"type": "group", "userId": 42, "groupId": 7, "messageId": 123})

    assert (event["userId"], event["groupId"], event["eventId"]) == ("42", "7", "123")


@pytest.mark.parametrize(
    ("message", "call_type", "expected"),
    [
        ({"type": "track", "event": "e"}, None, [("batch[3].userId", "missing")]),
        ({"type": "track", "userId": "u"}, None, [("batch[3].event", "missing")]),
        ({"type": "group", "userId": "u"}, None, [("batch[3].groupId", "missing")]),
        ({"type": "alias", "userId": "u"}, None, [("batch[3].previousId", "missing")]),
        ({"type": "alias", "previousId": "p", "anonymousId": "a"}, None, [("batch[3].userId", "missing")]),
        ({"userId": "u"}, None, [("batch[3].type", "missing")]),
        ({"type": "purchase", "userId": "u"}, None, [("batch[3].type", "unknown_type")]),
        ({"type": "page", "userId": "u"}, "track", [("batch[3].type", "type_mismatch"), ("batch[3].event", "missing")]),
        (
            {"type": "identify", "userId": True},
            None,
            [("batch[3].userId", "string_type"), ("batch[3].userId", "missing")],
        ),
        ({"type": "identify", "userId": "u", "traits": []}, None, [("batch[3].traits", "dict_type")]),
        ({"type": "identify", "userId": "u", "event": "x"}, None, [("batch[3].event", "unknown_field")]),
        ({"type": "identify", "userId": "u", "shoeSize": 9}, None, [("batch[3].shoeSize", "unknown_field")]),
        ({"type": "identify", "userId": "u", "timestamp": "yesterday"}, None, [("batch[3].timestamp", "datetime")]),
        (
            {"type": "identify", "userId": "u", "timestamp": "2026-11-27T12:00:00"},
            None,
            [("batch[3].timestamp", "datetime")],
        ),
    ],
)
def test_what_cannot_be_mapped_is_refused_with_segments_field_path(
    message: dict[str, Any], call_type: str | None, expected: list[tuple[str, str]]
) -> None:
    assert fields(refused(message, call_type=call_type, path="batch[3]")) == expected


def test_a_bad_batch_sentat_is_named_as_the_body_field() -> None:
    errors = refused({"type": "track", "event": "e", "userId": "u"}, batch_sent_at=17, path="batch[0]")

    assert fields(errors) == [("sentAt", "datetime")]


def test_a_message_that_is_not_an_object_is_refused() -> None:
    assert fields(refused(["track"], path="batch[1]")) == [("batch[1]", "not_an_object")]


def test_sdk_only_fields_are_accepted_and_not_stored() -> None:
    event = mapped(
        {
            "type": "track",
            "event": "e",
            "userId": "u",
            "integrations": {"All": True},
            "version": 2,
            "channel": "browser",
            "_metadata": {"bundled": []},
            "receivedAt": "2026-01-01T00:00:00Z",
            "writeKey": "cs_bk_secret",
        }
    )

    assert event == {"eventType": "track", "userId": "u", "name": "e"}


def test_the_batch_context_is_merged_under_the_message_context() -> None:
    event = mapped(
        {"type": "track", "event": "e", "userId": "u", "context": {"locale": "de-DE"}},
        batch_context={"locale": "en-US", "app": {"name": "shop"}},
    )

    assert event["context"] == {"locale": "de-DE", "app": {"name": "shop"}}


@pytest.mark.parametrize(
    ("ip", "stored"),
    [
        ("203.0.113.7", "203.0.113.0/24"),
        ("2001:db8:1:2::5", "2001:db8:1::/48"),
        ("not an address", "unknown"),
        (7, "unknown"),
    ],
)
def test_a_client_address_in_the_context_is_kept_as_its_network_only(ip: Any, stored: str) -> None:
    event = mapped({"type": "track", "event": "e", "userId": "u", "context": {"ip": ip, "userAgent": "UA"}})

    assert event["context"] == {"ip": stored, "userAgent": "UA"}


def test_a_tenantid_is_passed_on_for_the_key_check() -> None:
    assert mapped({"type": "track", "event": "e", "userId": "u", "tenantId": "globex"})["tenantId"] == "globex"


def test_every_call_type_maps_to_its_own_event_type() -> None:
    required = {"track": {"event": "e"}, "group": {"groupId": "g"}, "alias": {"previousId": "p"}}
    for call in CALL_TYPES:
        event = mapped({"type": call, "userId": "u", **required.get(call, {})})
        assert event["eventType"] == call


def test_an_identify_without_traits_takes_the_context_traits_as_rudderstack_sends_them() -> None:
    event = mapped({"userId": "u1", "context": {"traits": {"email": "x@y.z"}}}, call_type="identify")
    own = mapped({"userId": "u1", "traits": {"a": 1}, "context": {"traits": {"b": 2}}}, call_type="identify")

    assert event["traits"] == {"email": "x@y.z"}
    assert event["context"] == {"traits": {"email": "x@y.z"}}
    assert own["traits"] == {"a": 1}


def test_a_page_url_too_long_for_our_url_field_stays_in_the_context_only() -> None:
    long_url = "https://x.test/" + "a" * 2100
    event = mapped({"anonymousId": "a", "context": {"page": {"url": long_url}}}, call_type="page")

    assert "url" not in event
    assert event["context"]["page"]["url"] == long_url
    Event.model_validate({**event, "tenantId": "acme"}, context={"now": RECEIVED})
