"""From request body bytes to validated events, one outcome per event.

A batch is judged event by event: one bad event is rejected by its index and never fails
its neighbours. Only what makes the whole request unreadable (bad media type, size, JSON,
batch shape) fails the request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from ingest.errors import MalformedJsonError, PayloadTooLargeError, UnsupportedMediaTypeError
from shared.domain.events import (
    MAX_BATCH_EVENTS,
    MAX_BODY_BYTES,
    MAX_EVENT_BYTES,
    MAX_PROPERTIES_DEPTH,
    Event,
    nesting_depth,
)

__all__ = [
    "JSON_MEDIA_TYPES",
    "FieldError",
    "ParsedBody",
    "Unmappable",
    "parse_body",
    "require_body_within_limit",
    "require_json_content_type",
    "validate_event",
]


@dataclass(frozen=True, slots=True)
class FieldError:
    """Why one event was rejected: the field (JSON path) and a readable reason."""

    field: str
    message: str
    type: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "type": self.type}


@dataclass(frozen=True, slots=True)
class Unmappable:
    """An item a body reader already rejected (e.g. a Segment call with no equivalent): its reasons.

    `validate_event` returns the errors as they are, so the item is answered by its index like
    any other rejected event.
    """

    errors: list[FieldError]
    item: Any = None
    """The item as sent, for the kept events (`ingest.live_recording`); never validated or queued."""
    event_type: str | None = None
    """The event type the item would have had (a Segment call's type), if known."""


@dataclass(frozen=True, slots=True)
class ParsedBody:
    """A request body read into items to validate one by one."""

    items: list[Any]
    """Event objects (dicts), or `Unmappable` for an item the reader rejected itself."""
    is_batch: bool
    """Whether the body was a batch: then each event is measured against the per-event size limit."""
    write_key: str | None = None
    """A write key the body carried (Segment's `writeKey`), if its reader found one."""


JSON_MEDIA_TYPES = frozenset({"application/json", "text/plain"})
"""What a JSON body may be labelled: `application/json`, or `text/plain` as `navigator.sendBeacon`
sends a string (`text/plain;charset=UTF-8`, and a beacon cannot set headers). Either way the body
must be JSON, read as UTF-8 whatever the charset parameter says (as `HttpRequest.get_json()` does)."""


def require_json_content_type(content_type: str | None) -> None:
    """Accept `application/json` or `text/plain`, with any parameters (`; charset=utf-8`), nothing else."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in JSON_MEDIA_TYPES:
        shown = content_type or "none"
        raise UnsupportedMediaTypeError(
            f"Content-Type must be application/json, or text/plain with a JSON body as a beacon sends it (got {shown})"
        )


def require_body_within_limit(size: int) -> None:
    if size > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"request body is {size} bytes; the limit is {MAX_BODY_BYTES} bytes (1 MiB)")


def parse_body(body: bytes) -> ParsedBody:
    """Parse JSON: one event object or an array of at most `MAX_BATCH_EVENTS`."""
    if not body.strip():
        raise MalformedJsonError("request body is empty; send one event object or an array of events")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson also refuses documents nested more than 1024 levels deep here.
        raise MalformedJsonError(f"request body is not valid JSON: {exc}") from None
    if isinstance(document, dict):
        # An event nested too deep to measure is left to `validate_event`, which rejects it by field.
        size = event_size(document) if not nesting_errors(document) else 0
        if size > MAX_EVENT_BYTES:
            raise PayloadTooLargeError(f"event is {size} bytes; the limit is {MAX_EVENT_BYTES} bytes (32 KiB)")
        return ParsedBody([document], is_batch=False)
    if isinstance(document, list):
        if not document:
            raise MalformedJsonError("the batch is empty; send at least one event")
        if len(document) > MAX_BATCH_EVENTS:
            raise PayloadTooLargeError(f"the batch has {len(document)} events; the limit is {MAX_BATCH_EVENTS}")
        return ParsedBody(document, is_batch=True)
    raise MalformedJsonError("request body must be a JSON object (one event) or an array of events")


def validate_event(
    item: Any, *, received_at: datetime, measure_size: bool, tenant_id: str | None = None
) -> Event | list[FieldError]:
    """Validate one event; fill in `eventId` and `timestamp` when absent.

    `tenant_id` is the tenant of the request's write key, if it had one: an event without a
    `tenantId` is filled in with it, and an event naming another tenant is rejected (never
    rewritten: its sender meant that tenant and must learn the key does not write there).
    """
    if isinstance(item, Unmappable):
        return item.errors
    if not isinstance(item, dict):
        return [FieldError("", "each event must be a JSON object", "not_an_object")]
    # Depth before size: measuring serialises the event, which a deep enough one cannot survive.
    too_deep = nesting_errors(item)
    if too_deep:
        return too_deep
    if measure_size:
        size = event_size(item)
        if size > MAX_EVENT_BYTES:
            return [FieldError("", f"event is {size} bytes; the limit is {MAX_EVENT_BYTES} bytes", "event_too_large")]
    if tenant_id is not None:
        item = _with_tenant(item, tenant_id)
        if isinstance(item, FieldError):
            return [item]
    try:
        event = Event.model_validate(item, context={"now": received_at})
    except ValidationError as exc:
        return [_field_error(error) for error in exc.errors(include_url=False)]
    if event.event_id is None or event.timestamp is None:
        event = event.model_copy(
            update={"event_id": event.event_id or str(uuid.uuid4()), "timestamp": event.timestamp or received_at}
        )
    return event


def _with_tenant(item: dict[str, Any], tenant_id: str) -> dict[str, Any] | FieldError:
    """`item` with the key's tenant filled in, or the error for an event that names another tenant."""
    named = item.get("tenantId")
    if named is None:
        return {**item, "tenantId": tenant_id}
    if named == tenant_id:
        return item
    shown = f"tenant {named!r}" if isinstance(named, str) and len(named) <= 64 else "another tenant"
    return FieldError(
        "tenantId",
        f"this event belongs to {shown}; this key writes to tenant {tenant_id!r}",
        "tenant_mismatch",
    )


def nesting_errors(event: dict[str, Any]) -> list[FieldError]:
    """Each top-level field of an event nested deeper than `properties` may be, by name.

    Only `properties` may hold objects or arrays at all, at most `MAX_PROPERTIES_DEPTH` levels
    including itself; any field deeper than that is refused here, before anything walks it.
    """
    errors = []
    for name, value in event.items():
        if nesting_depth(value, limit=MAX_PROPERTIES_DEPTH) > MAX_PROPERTIES_DEPTH:
            errors.append(
                FieldError(str(name), f"{name} is nested more than {MAX_PROPERTIES_DEPTH} levels deep", "too_deep")
            )
    return errors


def event_size(item: Any) -> int:
    """An event's size as compact JSON, so whitespace in the request does not count."""
    return len(orjson.dumps(item))


def _field_error(error: Any) -> FieldError:
    field = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        message = f"unknown field {field!r}; put custom data in 'properties'"
    else:
        message = error["msg"].removeprefix("Value error, ")
    return FieldError(field, message, error["type"])
