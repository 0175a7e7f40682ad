"""One Segment message into one of our events: the mapping table of the Segment-compatible API.

Pure: a message (the parsed JSON object), its receive time and the batch's `sentAt` in, the
event's JSON object (`shared.domain.events.Event` names) or the field errors out. The event
is then validated by the same rules as `POST /api/events` (`ingest.validation`).

What each Segment field becomes (README, "Segment-compatible API", has the same table):

- `type` (a batch item's; a single call's comes from its route) -> `eventType`.
- `messageId` -> `eventId`: a UUID is canonicalised, another id kept as sent; absent, the
  server makes one as on our endpoint. A number is turned into text, as Segment's SDKs do.
- `userId`, `anonymousId`, `groupId`, `previousId` -> the same names (numbers into text). One of
  `userId` / `anonymousId` is required, except on `alias`, which requires `userId` and
  `previousId`; `group` requires `groupId`.
- track's `event` (required) and page's / screen's `name` -> `name`.
- `properties`, `traits` -> the same names, on every call that sends them; an identify call
  without `traits` takes `context.traits` (where RudderStack's SDKs put them).
- page's / screen's `category` -> `properties.category` (what analytics-node does itself).
- `context` -> `context`, merged under the batch's `context` (the message's keys win), with
  `context.ip` replaced by its network (`203.0.113.0/24`): no raw address is stored anywhere.
  `context.page.url` (else a page call's `properties.url`) -> `url`.
- `originalTimestamp` (else `timestamp`) -> `originalTimestamp`; the message's `sentAt`, else the
  batch's `sentAt`, else the batch's `timestamp` (rudder-sdk-node's flush time) -> `sentAt`. A
  batch's `timestamp` that differs from its `sentAt` by more than a second is refused (field
  error): within it, both are one flush time read twice.
- `timestamp` is kept as sent when `originalTimestamp` is sent too (a message that already went
  through Segment carries both, corrected); otherwise it is Segment's clock-skew correction
  `receivedAt - (sentAt - originalTimestamp)` when a device time and `sentAt` are given, the
  device's time when only it is, and the receive time when neither is. A correction beyond the
  representable times is refused with a field error on `sentAt`.
- `tenantId` is not Segment's, but kept as on our endpoint: the key's tenant is checked against it.
- Dropped, as instructions to Segment rather than data: `integrations` (destination routing),
  `version` (the API version), `channel` (`server` / `browser` / `mobile`, Segment sets it
  itself), `_metadata` (the SDK's bundling state), `receivedAt` (ours is the receive time),
  `writeKey` (a credential: authenticated, never stored).
- Anything else is refused with a field error (`unknown_field`), as on our endpoint: a
  message is never stored with part of it silently gone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final, Literal, NamedTuple

from ingest.validation import FieldError
from shared.domain.client_identity import anonymize_address

__all__ = [
    "CALL_TYPES",
    "DROPPED_FIELDS",
    "CallType",
    "map_message",
]

CallType = Literal["track", "page", "screen", "identify", "group", "alias"]
CALL_TYPES: Final[tuple[CallType, ...]] = ("track", "page", "screen", "identify", "group", "alias")

MAX_URL_LENGTH: Final = 2048
"""`Event.url`'s limit."""

DROPPED_FIELDS: Final = frozenset({"integrations", "version", "channel", "_metadata", "receivedAt", "writeKey"})
"""Segment fields accepted and not stored: instructions to Segment, not data about the event."""

ErrorSink = Callable[[str, str, str], None]
"""Records one field error: (field, message, type)."""

BATCH_TIMESTAMP_TOLERANCE: Final = timedelta(seconds=1)
"""How far a batch's `timestamp` may lie from its `sentAt`: rudder-sdk-node reads its clock once for each."""

_ID_FIELDS: Final = ("userId", "anonymousId", "groupId", "previousId")
_OBJECT_FIELDS: Final = ("properties", "traits")
_MAPPED_FIELDS: Final = frozenset(
    {
        "type",
        "messageId",
        *_ID_FIELDS,
        "event",
        "name",
        "category",
        *_OBJECT_FIELDS,
        "context",
        "timestamp",
        "originalTimestamp",
        "sentAt",
        "tenantId",
    }
)


def map_message(
    message: Any,
    *,
    received_at: datetime,
    call_type: CallType | None = None,
    batch_sent_at: Any = None,
    batch_timestamp: Any = None,
    batch_context: Mapping[str, Any] | None = None,
    path: str = "",
) -> dict[str, Any] | list[FieldError]:
    """Our event's JSON object for one Segment message, or why it cannot be one.

    `call_type` is the route's (`/v1/track`); None for a batch item, which names its own
    `type`. `path` prefixes every field error (`batch[3]`), so it names the field as sent.
    """
    if not isinstance(message, dict):
        return [FieldError(path, "each message must be a JSON object", "not_an_object")]
    errors: list[FieldError] = []

    def error(field: str, message_text: str, kind: str) -> None:
        # A field of the body itself (the batch's `sentAt`) is named without the item's path.
        name = field.removeprefix("/") if field.startswith("/") else _join(path, field)
        errors.append(FieldError(name, message_text, kind))

    for field in message:
        if field not in _MAPPED_FIELDS and field not in DROPPED_FIELDS:
            error(str(field), f"unknown field {field!r}: not a field of Segment's spec", "unknown_field")

    kind = _call_type(message.get("type"), call_type, error)
    event: dict[str, Any] = {"eventType": kind or "unknown"}
    if "tenantId" in message:
        event["tenantId"] = message["tenantId"]
    _map_ids_and_objects(message, event, error)
    _map_name(message, kind, event, error)
    _require_ids(kind, event, error)
    context = _context(message.get("context"), batch_context, error)
    if context is not None:
        event["context"] = context
        if kind == "identify" and "traits" not in event and isinstance(context.get("traits"), dict):
            # RudderStack's SDKs send an identify call's traits as `context.traits` only.
            event["traits"] = context["traits"]
    url = _url(context, event.get("properties") if kind == "page" else None)
    if url is not None:
        event["url"] = url
    _map_times(message, _BatchTimes(batch_sent_at, batch_timestamp), received_at, event, error)
    return errors or event


def _map_ids_and_objects(message: dict[str, Any], event: dict[str, Any], error: ErrorSink) -> None:
    for source, target in (("messageId", "eventId"), *((field, field) for field in _ID_FIELDS)):
        value = _text_id(message.get(source), source, error)
        if value is not None:
            event[target] = value
    for field in _OBJECT_FIELDS:
        found = _object(message.get(field), field, error)
        if found is not None:
            event[field] = found


def _call_type(sent: Any, route: CallType | None, error: ErrorSink) -> CallType | None:
    if route is not None:
        # A single call's route says what it is; a `type` in its body must agree.
        if sent is not None and sent != route:
            error("type", f"type {sent!r} does not match the call's route /v1/{route}", "type_mismatch")
        return route
    if sent is None:
        error("type", f"type is required in a batch: one of {', '.join(CALL_TYPES)}", "missing")
        return None
    for known in CALL_TYPES:
        if sent == known:
            return known
    error("type", f"type must be one of {', '.join(CALL_TYPES)} (got {sent!r})", "unknown_type")
    return None


def _text_id(value: Any, field: str, error: ErrorSink) -> str | None:
    """An id as text: numbers become text (Segment's SDKs do this); null and "" are absent."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    error(field, f"{field} must be a string or a number", "string_type")
    return None


def _object(value: Any, field: str, error: ErrorSink) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        error(field, f"{field} must be an object", "dict_type")
        return None
    return value


def _map_name(message: dict[str, Any], kind: CallType | None, event: dict[str, Any], error: ErrorSink) -> None:
    if kind == "track":
        name = message.get("event")
        if not isinstance(name, str) or not name:
            error("event", "a track call needs its event name (event), a non-empty string", "missing")
        else:
            event["name"] = name
        if message.get("name") is not None:
            error("name", "a track call names its event in 'event', not 'name'", "unknown_field")
        return
    if message.get("event") is not None:
        error("event", "only a track call has 'event'; page and screen calls use 'name'", "unknown_field")
    if kind in ("page", "screen"):
        _map_page_name(message.get("name"), event, error)
        _map_category(message.get("category"), event, error)
        return
    for field in ("name", "category"):
        if message.get(field) is not None:
            error(field, f"only page and screen calls have {field!r}", "unknown_field")


def _map_page_name(name: Any, event: dict[str, Any], error: ErrorSink) -> None:
    if name is None or name == "":
        return
    if isinstance(name, str):
        event["name"] = name
    else:
        error("name", "name must be a string", "string_type")


def _map_category(category: Any, event: dict[str, Any], error: ErrorSink) -> None:
    if category is None or category == "":
        return
    if not isinstance(category, str):
        error("category", "category must be a string", "string_type")
        return
    properties = dict(event.get("properties") or {})
    if properties.get("category", category) != category:
        # Both say something different: keeping one would lose the other.
        error("category", "category differs from properties.category; send one of them", "category_conflict")
        return
    properties["category"] = category
    event["properties"] = properties


def _require_ids(kind: CallType | None, event: dict[str, Any], error: ErrorSink) -> None:
    if kind == "alias":
        for field in ("userId", "previousId"):
            if field not in event:
                error(field, f"an alias call needs {field}", "missing")
        return
    if "userId" not in event and "anonymousId" not in event:
        error("userId", "a userId or an anonymousId is required", "missing")
    if kind == "group" and "groupId" not in event:
        error("groupId", "a group call needs groupId", "missing")


def _context(value: Any, batch_context: Mapping[str, Any] | None, error: ErrorSink) -> dict[str, Any] | None:
    own = _object(value, "context", error)
    if own is None and not batch_context:
        return None
    # Segment: the batch's context "will be merged with any context inside each of the items";
    # the item's own keys win.
    context = {**(batch_context or {}), **(own or {})}
    ip = context.get("ip")
    if ip is not None:
        context["ip"] = anonymize_address(ip) if isinstance(ip, str) else "unknown"
    return context


def _url(context: dict[str, Any] | None, page_properties: dict[str, Any] | None) -> str | None:
    page = (context or {}).get("page")
    for candidate in (page.get("url") if isinstance(page, dict) else None, (page_properties or {}).get("url")):
        # A URL too long for our `url` stays where it was sent (context, properties) and is not
        # copied: a copy must never get the message rejected.
        if isinstance(candidate, str) and 0 < len(candidate) <= MAX_URL_LENGTH:
            return candidate
    return None


class _BatchTimes(NamedTuple):
    sent_at: Any
    timestamp: Any


def _map_times(
    message: dict[str, Any], batch: _BatchTimes, received_at: datetime, event: dict[str, Any], error: ErrorSink
) -> None:
    stated = _time(message.get("timestamp"), "timestamp", error)
    original = _time(message.get("originalTimestamp"), "originalTimestamp", error)
    device = original if original is not None else stated
    sent_field, sent_at = _sent_at(message, batch, error)
    if device is not None:
        event["originalTimestamp"] = device.isoformat()
    if sent_at is not None:
        event["sentAt"] = sent_at.isoformat()
    if stated is not None and original is not None:
        # Both sent: the message was corrected already (one forwarded from Segment); keep both.
        event["timestamp"] = stated.isoformat()
    elif device is not None and sent_at is not None:
        # Segment's documented correction: the device clock's offset, measured when it sent the
        # request, taken off the device's event time.
        try:
            event["timestamp"] = (received_at - (sent_at - device)).isoformat()
        except OverflowError:
            name = sent_field.removeprefix("/")
            error(sent_field, f"{name} is so far from the event's time that the correction is no time", "datetime")
    elif device is not None:
        event["timestamp"] = device.isoformat()


def _sent_at(message: dict[str, Any], batch: _BatchTimes, error: ErrorSink) -> tuple[str, datetime | None]:
    """The message's `sentAt`, else the batch's, else the batch's `timestamp`, with the field it came from."""
    batch_sent_at = _time(batch.sent_at, "/sentAt", error)
    flushed = _time(batch.timestamp, "/timestamp", error)
    if batch_sent_at is not None and flushed is not None and abs(flushed - batch_sent_at) > BATCH_TIMESTAMP_TOLERANCE:
        error("/timestamp", "the batch's timestamp differs from its sentAt; send one of them", "timestamp_conflict")
    if message.get("sentAt") is not None:
        return "sentAt", _time(message["sentAt"], "sentAt", error)
    if batch_sent_at is not None:
        return "/sentAt", batch_sent_at
    return "/timestamp", flushed


def _time(value: Any, field: str, error: ErrorSink) -> datetime | None:
    if value is None:
        return None
    parsed: datetime | None = None
    if isinstance(value, str) and len(value) >= 10 and value[4] == "-":
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
    if parsed is None or parsed.tzinfo is None or parsed.utcoffset() is None:
        name = field.removeprefix("/")
        error(field, f"{name} must be an ISO 8601 time with an offset, e.g. 2026-01-31T12:00:00.000Z", "datetime")
        return None
    return parsed


def _join(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field
