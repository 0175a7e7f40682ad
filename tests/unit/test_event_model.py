"""The v1 event contract as a producer meets it: what `POST /api/events` accepts and rejects.

Covers `shared.domain.events.Event` and the request-level checks of `ingest.validation`.
Everything is pure: the receive time is passed in, no clock is read.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
import pytest

from ingest.errors import MalformedJsonError, PayloadTooLargeError, UnsupportedMediaTypeError
from ingest.http import status_for
from ingest.validation import (
    FieldError,
    parse_body,
    require_body_within_limit,
    require_json_content_type,
    validate_event,
)
from shared.domain.events import (
    MAX_BATCH_EVENTS,
    MAX_BODY_BYTES,
    MAX_EVENT_BYTES,
    MAX_FUTURE_SKEW,
    MAX_PAST_AGE,
    MAX_PROPERTIES_DEPTH,
    MAX_PROPERTIES_KEYS,
    MAX_PROPERTY_KEY_LENGTH,
    Event,
)

RECEIVED_AT = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
SEED = {"eventType": "page_view", "correlationId": "test-1", "tenantId": "acme", "url": "/home"}

MakeEvent = Callable[..., dict[str, Any]]
Validate = Callable[[Any], "Event | list[FieldError]"]


@pytest.fixture
def make_event() -> MakeEvent:
    """A valid event body; keyword arguments override (or, with `None`, remove) fields."""

    def make(**overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"eventType": "page_view", "tenantId": "acme"}
        for name, value in overrides.items():
            if value is None:
                body.pop(name, None)
            else:
                body[name] = value
        return body

    return make


@pytest.fixture
def validate() -> Validate:
    """`validate_event` as ingest calls it for a single-event request received at `RECEIVED_AT`."""

    def run(item: Any) -> Event | list[FieldError]:
        return validate_event(item, received_at=RECEIVED_AT, measure_size=False)

    return run


def accepted(result: Event | list[FieldError]) -> Event:
    assert isinstance(result, Event), f"expected the event to be accepted, got {result}"
    return result


def rejected(result: Event | list[FieldError]) -> dict[str, FieldError]:
    """The errors of a rejected event, by field."""
    assert isinstance(result, list), f"expected the event to be rejected, got {result!r}"
    assert result, "a rejected event must carry at least one error"
    return {error.field: error for error in result}


def nested(depth: int) -> dict[str, Any]:
    """`properties` whose objects are nested `depth` levels deep (the properties object is level 1)."""
    value: dict[str, Any] = {"leaf": 1}
    for level in range(depth - 1):
        value = {f"level{level}": value}
    return value


# --- The seed example and the defaults the server fills in ----------------------------------


def test_the_seed_example_is_accepted_with_a_fresh_event_id_and_the_receive_time(validate: Validate) -> None:
    event = accepted(validate(dict(SEED)))

    assert (event.event_type, event.tenant_id, event.correlation_id, event.url) == (
        "page_view",
        "acme",
        "test-1",
        "/home",
    )
    assert event.event_id is not None
    assert UUID(event.event_id).version == 4
    assert event.timestamp == RECEIVED_AT


def test_each_event_without_an_id_gets_its_own(validate: Validate) -> None:
    first = accepted(validate(dict(SEED)))
    second = accepted(validate(dict(SEED)))

    assert first.event_id != second.event_id


def test_a_given_event_id_and_timestamp_are_kept(validate: Validate, make_event: MakeEvent) -> None:
    event_id = "0b6f3c4e-8a51-4c4e-9d0a-3c5e1f7b2a90"

    event = accepted(validate(make_event(eventId=event_id.upper(), timestamp="2026-01-31T11:30:00+01:00")))

    assert event.event_id == event_id
    assert event.timestamp == datetime(2026, 1, 31, 10, 30, tzinfo=UTC)


def test_the_event_serialises_back_with_the_contract_field_names(validate: Validate) -> None:
    event = accepted(validate(dict(SEED)))

    assert set(event.model_dump(by_alias=True, exclude_none=True)) == {
        "eventType",
        "tenantId",
        "eventId",
        "correlationId",
        "timestamp",
        "url",
    }


# --- Required, unknown and mistyped fields ----------------------------------------------------


@pytest.mark.parametrize("missing", ["eventType", "tenantId"])
def test_a_missing_required_field_is_reported_by_its_name(
    validate: Validate, make_event: MakeEvent, missing: str
) -> None:
    errors = rejected(validate(make_event(**{missing: None})))

    assert list(errors) == [missing]
    assert errors[missing].type == "missing"


def test_every_problem_of_an_event_is_reported_at_once(validate: Validate) -> None:
    errors = rejected(validate({"url": ""}))

    assert set(errors) == {"eventType", "tenantId", "url"}


def test_an_unknown_top_level_field_is_rejected_by_name_and_points_to_properties(
    validate: Validate, make_event: MakeEvent
) -> None:
    errors = rejected(validate(make_event(price=9.99)))

    assert list(errors) == ["price"]
    assert errors["price"].type == "extra_forbidden"
    assert "'price'" in errors["price"].message
    assert "properties" in errors["price"].message


def test_custom_data_inside_properties_is_accepted(validate: Validate, make_event: MakeEvent) -> None:
    event = accepted(validate(make_event(properties={"price": 9.99, "tags": ["a", "b"], "cart": {"items": 2}})))

    assert event.properties == {"price": 9.99, "tags": ["a", "b"], "cart": {"items": 2}}


def test_python_field_names_are_not_part_of_the_contract(validate: Validate) -> None:
    errors = rejected(validate({"event_type": "page_view", "tenant_id": "acme"}))

    assert errors["event_type"].type == "extra_forbidden"


def test_an_error_can_be_rendered_for_the_response_body(validate: Validate, make_event: MakeEvent) -> None:
    [error] = rejected(validate(make_event(tenantId=None))).values()

    assert error.to_dict() == {"field": "tenantId", "message": "Field required", "type": "missing"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("eventType", 42), ("tenantId", True), ("correlationId", 1), ("url", ["/home"]), ("userId", {"id": 1})],
)
def test_a_non_string_where_text_is_expected_is_rejected(
    validate: Validate, make_event: MakeEvent, field: str, value: Any
) -> None:
    errors = rejected(validate(make_event(**{field: value})))

    assert errors[field].type == "string_type"


def test_properties_must_be_an_object(validate: Validate, make_event: MakeEvent) -> None:
    errors = rejected(validate(make_event(properties=["a"])))

    assert errors["properties"].type == "dict_type"


def test_an_event_id_may_be_a_text_id_as_segment_message_ids_are(validate: Validate, make_event: MakeEvent) -> None:
    event = accepted(validate(make_event(eventId="ajs-next-0f3c9b2e8d1a4c5b")))

    assert event.event_id == "ajs-next-0f3c9b2e8d1a4c5b"


@pytest.mark.parametrize("event_id", ["a/b", "-leading-dash", "x" * 64, "has space", "", 42])
def test_an_event_id_that_is_neither_a_uuid_nor_a_text_id_is_rejected(
    validate: Validate, make_event: MakeEvent, event_id: object
) -> None:
    errors = rejected(validate(make_event(eventId=event_id)))

    assert "eventId must be" in errors["eventId"].message


@pytest.mark.parametrize("value", [1769860800, 1769860800.5])
def test_a_timestamp_given_as_a_number_is_rejected(validate: Validate, make_event: MakeEvent, value: float) -> None:
    errors = rejected(validate(make_event(timestamp=value)))

    assert "RFC 3339" in errors["timestamp"].message


def test_a_timestamp_without_an_offset_is_rejected(validate: Validate, make_event: MakeEvent) -> None:
    errors = rejected(validate(make_event(timestamp="2026-01-31T12:00:00")))

    assert errors["timestamp"].type == "timezone_aware"


@pytest.mark.parametrize("value", ["2026-01-31", "1769860800", "yesterday"])
def test_a_timestamp_that_is_not_an_rfc3339_date_time_is_rejected(
    validate: Validate, make_event: MakeEvent, value: str
) -> None:
    errors = rejected(validate(make_event(timestamp=value)))

    assert "RFC 3339" in errors["timestamp"].message


def test_a_timestamp_that_is_not_a_date_is_rejected(validate: Validate, make_event: MakeEvent) -> None:
    errors = rejected(validate(make_event(timestamp="yesterday")))

    assert list(errors) == ["timestamp"]


def test_a_timestamp_given_as_a_string_of_digits_is_rejected(validate: Validate, make_event: MakeEvent) -> None:
    errors = rejected(validate(make_event(timestamp="1769860800")))

    assert "timestamp" in errors


# --- Bounded strings and identifier patterns ---------------------------------------------------


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("eventType", 64),
        ("tenantId", 64),
        ("correlationId", 128),
        ("userId", 128),
        ("sessionId", 128),
        ("url", 2048),
    ],
)
def test_string_lengths_are_bounded_at_the_limit(
    validate: Validate, make_event: MakeEvent, field: str, limit: int
) -> None:
    # GIVEN a value exactly at the limit, and one a character over it
    at_limit, over = "a" * limit, "a" * (limit + 1)

    # THEN the first is accepted and the second rejected by its field
    accepted(validate(make_event(**{field: at_limit})))
    errors = rejected(validate(make_event(**{field: over})))
    assert errors[field].type == "string_too_long"


@pytest.mark.parametrize("field", ["eventType", "tenantId", "correlationId", "userId", "sessionId", "url"])
def test_an_empty_string_is_rejected(validate: Validate, make_event: MakeEvent, field: str) -> None:
    errors = rejected(validate(make_event(**{field: ""})))

    assert errors[field].type == "string_too_short"


@pytest.mark.parametrize("tenant", ["acme", "Acme-EU.2", "9to5", "a_b"])
def test_tenant_ids_of_letters_digits_dot_dash_underscore_are_accepted(
    validate: Validate, make_event: MakeEvent, tenant: str
) -> None:
    assert accepted(validate(make_event(tenantId=tenant))).tenant_id == tenant


@pytest.mark.parametrize("tenant", ["-acme", ".acme", "_acme", "acme/eu", "acme eu", "acme:eu", "acmé", "acme\n"])
def test_tenant_ids_outside_the_pattern_are_rejected(validate: Validate, make_event: MakeEvent, tenant: str) -> None:
    errors = rejected(validate(make_event(tenantId=tenant)))

    assert errors["tenantId"].type == "string_pattern_mismatch"


def test_event_types_may_also_contain_a_colon(validate: Validate, make_event: MakeEvent) -> None:
    assert accepted(validate(make_event(eventType="checkout:completed"))).event_type == "checkout:completed"


@pytest.mark.parametrize("event_type", [":page_view", "page view", "page/view"])
def test_event_types_outside_the_pattern_are_rejected(
    validate: Validate, make_event: MakeEvent, event_type: str
) -> None:
    errors = rejected(validate(make_event(eventType=event_type)))

    assert errors["eventType"].type == "string_pattern_mismatch"


# --- properties: depth, key count, key length -------------------------------------------------


def test_properties_nested_at_the_depth_limit_are_accepted(validate: Validate, make_event: MakeEvent) -> None:
    accepted(validate(make_event(properties=nested(MAX_PROPERTIES_DEPTH))))


def test_properties_nested_deeper_than_the_limit_are_rejected(validate: Validate, make_event: MakeEvent) -> None:
    errors = rejected(validate(make_event(properties=nested(MAX_PROPERTIES_DEPTH + 1))))

    assert f"more than {MAX_PROPERTIES_DEPTH} levels" in errors["properties"].message


def nested_with_array_at(depth: int) -> dict[str, Any]:
    """Objects nested `depth - 1` levels whose innermost value is an array of scalars (level `depth`)."""
    value: dict[str, Any] = {f"level{depth - 2}": [1, 2]}
    for level in range(depth - 2):
        value = {f"level{level}": value}
    return value


def test_an_array_counts_as_a_level_of_nesting(validate: Validate, make_event: MakeEvent) -> None:
    # GIVEN an array of scalars as the innermost value, at the limit and one level below it
    at_limit = nested_with_array_at(MAX_PROPERTIES_DEPTH)
    over = nested_with_array_at(MAX_PROPERTIES_DEPTH + 1)

    # THEN the array is a level like an object is
    accepted(validate(make_event(properties=at_limit)))
    errors = rejected(validate(make_event(properties=over)))
    assert f"more than {MAX_PROPERTIES_DEPTH} levels" in errors["properties"].message


def test_objects_inside_arrays_count_towards_depth(validate: Validate, make_event: MakeEvent) -> None:
    # properties (1) -> array (2) -> object (3) -> array (4) -> object (5): at the limit
    at_limit = {"a": [{"b": [{"c": 1}]}]}
    # ... one more object level inside: over
    over = {"a": [{"b": [{"c": {"d": 1}}]}]}

    accepted(validate(make_event(properties=at_limit)))
    assert "properties" in rejected(validate(make_event(properties=over)))


def test_properties_with_the_maximum_number_of_keys_are_accepted(validate: Validate, make_event: MakeEvent) -> None:
    properties = {f"k{i}": i for i in range(MAX_PROPERTIES_KEYS)}

    accepted(validate(make_event(properties=properties)))


def test_properties_with_one_key_too_many_are_rejected(validate: Validate, make_event: MakeEvent) -> None:
    properties = {f"k{i}": i for i in range(MAX_PROPERTIES_KEYS + 1)}

    errors = rejected(validate(make_event(properties=properties)))

    assert f"{MAX_PROPERTIES_KEYS + 1} keys" in errors["properties"].message


def test_keys_are_counted_at_every_level_including_inside_arrays(validate: Validate, make_event: MakeEvent) -> None:
    # GIVEN 96 plain top-level keys plus "obj" and "arr" (98), "obj" holding one key (99)
    # and "arr" holding an object of `extra_nested_keys` keys
    def properties(extra_nested_keys: int) -> dict[str, Any]:
        top: dict[str, Any] = {f"k{i}": i for i in range(MAX_PROPERTIES_KEYS - 4)}
        top["obj"] = {"x": 1}
        top["arr"] = [{f"y{i}": i for i in range(extra_nested_keys)}]
        return top

    accepted(validate(make_event(properties=properties(1))))  # 100 keys in all
    errors = rejected(validate(make_event(properties=properties(2))))  # 101 keys in all
    assert f"{MAX_PROPERTIES_KEYS + 1} keys" in errors["properties"].message


@pytest.mark.parametrize("where", ["top", "nested"])
def test_property_keys_are_bounded_in_length(validate: Validate, make_event: MakeEvent, where: str) -> None:
    def properties(key: str) -> dict[str, Any]:
        return {key: 1} if where == "top" else {"outer": {key: 1}}

    accepted(validate(make_event(properties=properties("k" * MAX_PROPERTY_KEY_LENGTH))))
    errors = rejected(validate(make_event(properties=properties("k" * (MAX_PROPERTY_KEY_LENGTH + 1)))))
    assert f"longer than {MAX_PROPERTY_KEY_LENGTH} characters" in errors["properties"].message


# --- Timestamp skew, against the receive time ----------------------------------------------------

MICROSECOND = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("offset", "ok"),
    [
        (MAX_FUTURE_SKEW, True),
        (MAX_FUTURE_SKEW + MICROSECOND, False),
        (-MAX_PAST_AGE, True),
        (-MAX_PAST_AGE - MICROSECOND, False),
        (timedelta(0), True),
    ],
    ids=["future-at-limit", "future-over", "past-at-limit", "past-over", "now"],
)
def test_timestamps_are_bounded_around_the_receive_time(
    validate: Validate, make_event: MakeEvent, offset: timedelta, ok: bool
) -> None:
    timestamp = (RECEIVED_AT + offset).isoformat()

    result = validate(make_event(timestamp=timestamp))

    if ok:
        assert accepted(result).timestamp == RECEIVED_AT + offset
    else:
        assert rejected(result)["timestamp"].type == "value_error"


def test_skew_is_judged_in_absolute_time_whatever_the_offset(validate: Validate, make_event: MakeEvent) -> None:
    # 15:00+02:00 is 13:00Z: exactly one hour ahead of 12:00Z
    accepted(validate(make_event(timestamp="2026-01-31T15:00:00+02:00")))
    assert "timestamp" in rejected(validate(make_event(timestamp="2026-01-31T15:00:01+02:00")))


def test_the_skew_messages_say_which_bound_was_broken(validate: Validate, make_event: MakeEvent) -> None:
    future = rejected(validate(make_event(timestamp=(RECEIVED_AT + timedelta(hours=2)).isoformat())))
    past = rejected(validate(make_event(timestamp=(RECEIVED_AT - timedelta(days=8)).isoformat())))

    assert "ahead of the server clock" in future["timestamp"].message
    assert f"{MAX_PAST_AGE.days} days old" in past["timestamp"].message


def test_without_a_receive_time_the_model_does_not_judge_skew() -> None:
    event = Event.model_validate({"eventType": "a", "tenantId": "b", "timestamp": "2000-01-01T00:00:00Z"})

    assert event.timestamp == datetime(2000, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("field", ["originalTimestamp", "sentAt"])
@pytest.mark.parametrize(
    ("sent", "ok"),
    [
        ("1970-01-01T00:00:00Z", True),
        ("9999-12-31T23:59:59.999999Z", True),
        ("1970-01-01T00:59:59+01:00", False),
        ("1969-12-31T23:59:59Z", False),
        ("0001-01-01T00:00:00+14:00", False),
        ("9999-12-31T23:00:00-14:00", False),
    ],
    ids=["epoch", "end-of-9999", "before-epoch-in-utc", "before-epoch", "utc-before-year-1", "utc-after-9999"],
)
def test_device_times_lie_between_the_epoch_and_the_end_of_9999_in_utc(
    validate: Validate, make_event: MakeEvent, field: str, sent: str, ok: bool
) -> None:
    result = validate(make_event(**{field: sent}))

    if ok:
        accepted(result)
    else:
        error = rejected(result)[field]
        assert error.type == "value_error"
        assert "1970-01-01T00:00:00Z" in error.message


# --- Request-level checks: media type, body size, JSON shape ------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        " application/json ;x=1",
        # What navigator.sendBeacon(url, string) sends; it cannot set another.
        "text/plain;charset=UTF-8",
        "text/plain",
        "Text/Plain; charset=iso-8859-1",
    ],
)
def test_json_and_beacon_content_types_are_accepted(content_type: str) -> None:
    require_json_content_type(content_type)


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "multipart/form-data", "text/html", "application/jsonx", ""]
)
def test_other_content_types_are_refused_naming_what_was_sent_and_what_is_accepted(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaTypeError) as raised:
        require_json_content_type(content_type)

    assert status_for(raised.value) == 415
    assert raised.value.code == "unsupported_media_type"
    assert (content_type or "none") in raised.value.message
    assert "application/json" in raised.value.message
    assert "text/plain" in raised.value.message


def test_a_missing_content_type_is_refused() -> None:
    with pytest.raises(UnsupportedMediaTypeError, match=r"got none"):
        require_json_content_type(None)


def test_a_body_of_exactly_one_mebibyte_is_allowed() -> None:
    require_body_within_limit(MAX_BODY_BYTES)


def test_a_body_one_byte_over_one_mebibyte_is_refused() -> None:
    with pytest.raises(PayloadTooLargeError) as raised:
        require_body_within_limit(MAX_BODY_BYTES + 1)

    assert status_for(raised.value) == 413
    assert str(MAX_BODY_BYTES + 1) in raised.value.message


def test_one_object_is_parsed_as_a_single_event() -> None:
    parsed = parse_body(orjson.dumps(SEED))

    assert parsed.items == [SEED]
    assert parsed.is_batch is False


def test_an_array_is_parsed_as_a_batch_in_order() -> None:
    parsed = parse_body(b'[{"n": 1}, {"n": 2}, 3]')

    assert parsed.items == [{"n": 1}, {"n": 2}, 3]
    assert parsed.is_batch is True


@pytest.mark.parametrize(
    "body",
    [b'{"eventType": "page_view",', b"not json", b"", b"  \n\t ", b"42", b'"event"', b"null", b"true", b"[]"],
    ids=["truncated", "garbage", "empty", "whitespace", "number", "string", "null", "bool", "empty-array"],
)
def test_unreadable_bodies_are_malformed_json(body: bytes) -> None:
    with pytest.raises(MalformedJsonError) as raised:
        parse_body(body)

    assert status_for(raised.value) == 400
    assert raised.value.code == "malformed_json"


def test_a_batch_of_the_maximum_size_is_parsed() -> None:
    parsed = parse_body(orjson.dumps([SEED] * MAX_BATCH_EVENTS))

    assert len(parsed.items) == MAX_BATCH_EVENTS


def test_a_batch_one_event_too_long_is_refused() -> None:
    with pytest.raises(PayloadTooLargeError, match=str(MAX_BATCH_EVENTS + 1)):
        parse_body(orjson.dumps([SEED] * (MAX_BATCH_EVENTS + 1)))


def body_of_size(size: int) -> bytes:
    """A single valid event serialised to exactly `size` bytes."""
    skeleton = orjson.dumps({"eventType": "a", "tenantId": "b", "properties": {"pad": ""}})
    body = orjson.dumps({"eventType": "a", "tenantId": "b", "properties": {"pad": "x" * (size - len(skeleton))}})
    assert len(body) == size
    return body


def test_a_single_event_of_exactly_32_kib_is_parsed() -> None:
    assert parse_body(body_of_size(MAX_EVENT_BYTES)).is_batch is False


def test_a_single_event_over_32_kib_is_refused_as_too_large() -> None:
    with pytest.raises(PayloadTooLargeError) as raised:
        parse_body(body_of_size(MAX_EVENT_BYTES + 1))

    assert status_for(raised.value) == 413
    assert raised.value.code == "payload_too_large"


# --- Batch items, judged one by one ---------------------------------------------------------------


def test_an_oversize_batch_item_is_rejected_as_event_too_large() -> None:
    item = orjson.loads(body_of_size(MAX_EVENT_BYTES + 1))

    result = validate_event(item, received_at=RECEIVED_AT, measure_size=True)

    assert result == [
        FieldError("", f"event is {MAX_EVENT_BYTES + 1} bytes; the limit is {MAX_EVENT_BYTES} bytes", "event_too_large")
    ]


def test_a_batch_item_of_exactly_32_kib_is_accepted() -> None:
    item = orjson.loads(body_of_size(MAX_EVENT_BYTES))

    accepted(validate_event(item, received_at=RECEIVED_AT, measure_size=True))


@pytest.mark.parametrize("item", [42, "page_view", None, [SEED]])
def test_a_batch_item_that_is_not_an_object_is_rejected_as_such(item: Any) -> None:
    result = validate_event(item, received_at=RECEIVED_AT, measure_size=True)

    assert result == [FieldError("", "each event must be a JSON object", "not_an_object")]


def test_a_bad_batch_item_does_not_affect_its_neighbours() -> None:
    parsed = parse_body(orjson.dumps([SEED, {"eventType": "x"}, SEED]))

    results = [validate_event(item, received_at=RECEIVED_AT, measure_size=parsed.is_batch) for item in parsed.items]

    assert [isinstance(result, Event) for result in results] == [True, False, True]
    assert rejected(results[1]).keys() == {"tenantId"}


# --- Hostile shapes: deep nesting, numbers beyond 64 bits ----------------------------------------


def deeply_nested(levels: int, *, as_array: bool = False) -> Any:
    """`levels` objects (or arrays) inside one another, far beyond any limit."""
    value: Any = 1
    for _ in range(levels):
        value = [value] if as_array else {"a": value}
    return value


def deeply_nested_json(levels: int) -> bytes:
    """The JSON text of `deeply_nested(levels)`, written out directly: orjson cannot serialise it."""
    return b'{"a": ' * levels + b"1" + b"}" * levels


@pytest.mark.parametrize("as_array", [False, True])
@pytest.mark.parametrize("measure_size", [False, True])
def test_properties_nested_thousands_deep_are_rejected_by_field(as_array: bool, measure_size: bool) -> None:
    # GIVEN properties nested deeper than JSON serialisation (and Python's stack) can follow
    item = {"eventType": "a", "tenantId": "b", "properties": {"p": deeply_nested(1000, as_array=as_array)}}

    result = validate_event(item, received_at=RECEIVED_AT, measure_size=measure_size)

    assert result == [
        FieldError("properties", f"properties is nested more than {MAX_PROPERTIES_DEPTH} levels deep", "too_deep")
    ]


def test_any_field_nested_thousands_deep_is_rejected_by_its_name() -> None:
    item = {"eventType": deeply_nested(1000, as_array=True), "tenantId": "b"}

    result = validate_event(item, received_at=RECEIVED_AT, measure_size=True)

    assert rejected(result).keys() == {"eventType"}


def test_a_single_event_nested_thousands_deep_parses_and_is_then_rejected() -> None:
    body = b'{"eventType": "a", "tenantId": "b", "properties": ' + deeply_nested_json(1000) + b"}"

    parsed = parse_body(body)

    assert "properties" in rejected(validate_event(parsed.items[0], received_at=RECEIVED_AT, measure_size=False))


def test_a_deeply_nested_batch_item_does_not_fail_its_neighbours() -> None:
    seed = orjson.dumps(SEED)
    deep = b'{"eventType": "a", "tenantId": "b", "properties": ' + deeply_nested_json(1000) + b"}"
    parsed = parse_body(b"[" + b",".join([seed, deep, seed]) + b"]")

    results = [validate_event(item, received_at=RECEIVED_AT, measure_size=parsed.is_batch) for item in parsed.items]

    assert [isinstance(result, Event) for result in results] == [True, False, True]


@pytest.mark.parametrize("body", [b"[" * 2000 + b"]" * 2000, b'{"properties":' * 2000 + b"1" + b"}" * 2000])
def test_a_body_nested_beyond_what_the_parser_reads_is_malformed_json(body: bytes) -> None:
    with pytest.raises(MalformedJsonError) as raised:
        parse_body(body)

    assert status_for(raised.value) == 400
    assert "depth" in raised.value.message


@pytest.mark.parametrize(
    "literal", [b"18446744073709551616", b"9223372036854775808", b"-9223372036854775809", b"1e300"]
)
def test_numbers_beyond_the_signed_64_bit_range_are_rejected_naming_the_property(literal: bytes) -> None:
    # GIVEN a number no 64-bit integer holds, which JSON parsing would otherwise round silently
    properties = b'{"cart": {"items": [1, ' + literal + b"]}}"
    item = orjson.loads(b'{"eventType": "a", "tenantId": "b", "properties": ' + properties + b"}")

    errors = rejected(validate_event(item, received_at=RECEIVED_AT, measure_size=True))

    assert "properties.cart.items[1]" in errors["properties"].message
    assert "signed 64-bit integer range" in errors["properties"].message


@pytest.mark.parametrize("literal", [b"9223372036854775807", b"-9223372036854775808", b"0.5", b"-1e18"])
def test_numbers_within_the_signed_64_bit_range_are_kept_exactly(literal: bytes) -> None:
    item = orjson.loads(b'{"eventType": "a", "tenantId": "b", "properties": {"n": ' + literal + b"}}")

    event = accepted(validate_event(item, received_at=RECEIVED_AT, measure_size=True))

    assert event.properties == {"n": orjson.loads(literal)}
