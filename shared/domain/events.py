"""The v1 event contract: what a producer may send to `POST /api/events`.

Plain pydantic, no Azure import. Limits are module constants so the OpenAPI document, the
validation and the docs all quote the same numbers.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

__all__ = [
    "EARLIEST_DEVICE_TIME",
    "EVENT_ID_PATTERN",
    "LATEST_DEVICE_TIME",
    "Event",
    "canonical_event_id",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_BATCH_EVENTS",
    "MAX_BODY_BYTES",
    "MAX_EVENT_BYTES",
    "MAX_FUTURE_SKEW",
    "MAX_PAST_AGE",
    "MAX_PROPERTIES_DEPTH",
    "MAX_PROPERTIES_KEYS",
    "MAX_PROPERTY_KEY_LENGTH",
    "TENANT_ID_PATTERN",
    "nesting_depth",
]

MAX_BODY_BYTES = 1024 * 1024
MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_EVENTS = 500
MAX_PROPERTIES_DEPTH = 5
MAX_PROPERTIES_KEYS = 100
MAX_PROPERTY_KEY_LENGTH = 128
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Looser than the fraud rules' thresholds on purpose: a skewed but plausible clock is stored
# and flagged there, only an impossible one is refused here.
MAX_FUTURE_SKEW = timedelta(hours=1)
MAX_PAST_AGE = timedelta(days=7)
# A device's own times (originalTimestamp, sentAt) are not bounded by the server clock, only kept
# within what every store takes: from the Unix epoch to the end of year 9999 in UTC (Data
# Explorer's `datetime` ends there; Python's overflows past it when an offset is taken off).
EARLIEST_DEVICE_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_DEVICE_TIME = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)

TENANT_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
"""A tenant id, unanchored: match it whole (`re.fullmatch`; `$` would let a trailing newline through)."""

EVENT_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}"
"""An eventId that is not a UUID (a Segment `messageId`), unanchored: match it whole. At most 63
characters, so the queue message id `<tenantId>/<eventId>` stays within Service Bus's 128."""

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
TenantId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=256)]


_RFC3339_START = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]")


def _rfc3339_string(value: object) -> object:
    # pydantic would also take a number, or a string of digits, as Unix time; the contract
    # says RFC 3339 text.
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339_START.match(value)):
        return value
    raise ValueError("timestamp must be an RFC 3339 string, e.g. 2026-01-31T12:00:00Z")


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_string)]

_EVENT_ID = re.compile(EVENT_ID_PATTERN)


def canonical_event_id(value: object) -> str:
    """A UUID in its canonical form, or a text id (a Segment messageId) as it is; `ValueError` for anything else."""
    if isinstance(value, UUID):
        return str(value)
    if not isinstance(value, str):
        raise ValueError("eventId must be a string")
    try:
        return str(UUID(value))
    except ValueError:
        pass
    if _EVENT_ID.fullmatch(value):
        return value
    raise ValueError(
        "eventId must be a UUID, or 1-63 letters, digits, '_', '.', ':' or '-' starting with a letter or digit"
    )


# The pattern also matches every UUID, so it describes both forms to OpenAPI readers.
EventId = Annotated[
    str,
    BeforeValidator(canonical_event_id),
    WithJsonSchema({"type": "string", "maxLength": 63, "pattern": f"^{EVENT_ID_PATTERN}$"}),
]


class Event(BaseModel):
    """One user-behaviour event as a producer sends it."""

    # Producers use the JSON names only (eventType); the Python names are not part of the API.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=False, validate_by_alias=True)

    event_type: Identifier = Field(alias="eventType", description="What happened, e.g. page_view, purchase.")
    tenant_id: TenantId = Field(alias="tenantId", description="The producer's tenant; the storage partition key.")
    event_id: EventId | None = Field(
        None,
        alias="eventId",
        description=(
            "With tenantId, the idempotency key end to end; the server makes a UUID if absent. A UUID "
            "(stored in its canonical lower-case form) or, as a Segment messageId, 1-63 letters, digits, "
            "'_', '.', ':' or '-'."
        ),
    )
    correlation_id: ShortText | None = Field(None, alias="correlationId")
    timestamp: Timestamp | None = Field(
        None,
        description=(
            "RFC 3339 with an offset; defaults to the receive time. At most "
            f"{int(MAX_FUTURE_SKEW.total_seconds() // 3600)} h ahead of the server clock and at most "
            f"{MAX_PAST_AGE.days} days old."
        ),
    )
    user_id: ShortText | None = Field(None, alias="userId")
    session_id: ShortText | None = Field(None, alias="sessionId")
    url: Url | None = None
    properties: dict[str, Any] | None = Field(
        None,
        description=(
            f"Free-form custom data: at most {MAX_PROPERTIES_KEYS} keys in all, nested at most "
            f"{MAX_PROPERTIES_DEPTH} deep, keys at most {MAX_PROPERTY_KEY_LENGTH} characters, "
            "numbers within the signed 64-bit integer range."
        ),
    )
    # What the Segment-compatible API carries beside the fields above (`ingest.segment`); any
    # producer may send them.
    anonymous_id: ShortText | None = Field(
        None, alias="anonymousId", description="An id for a user not (yet) known by userId, e.g. a browser's."
    )
    name: Name | None = Field(
        None, description="A name for what happened: a Segment track call's event name, a page's or screen's name."
    )
    group_id: ShortText | None = Field(None, alias="groupId", description="The group (account) of a group call.")
    previous_id: ShortText | None = Field(
        None, alias="previousId", description="The user's previous id, of an alias call."
    )
    traits: dict[str, Any] | None = Field(
        None, description="What is known about the user or group (identify, group); bounded as properties are."
    )
    context: dict[str, Any] | None = Field(
        None,
        description="Where the event came from (page, library, locale, device...), bounded as properties are.",
    )
    original_timestamp: Timestamp | None = Field(
        None,
        alias="originalTimestamp",
        description=(
            "The device's clock when the event happened, before clock-skew correction; "
            "from 1970 to the end of 9999 in UTC."
        ),
    )
    sent_at: Timestamp | None = Field(
        None,
        alias="sentAt",
        description="The device's clock when it sent the event; from 1970 to the end of 9999 in UTC.",
    )

    @field_validator("timestamp")
    @classmethod
    def _timestamp_within_skew(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        now = (info.context or {}).get("now")
        if value is None or now is None:
            return value
        if value - now > MAX_FUTURE_SKEW:
            raise ValueError(f"timestamp is more than {MAX_FUTURE_SKEW} ahead of the server clock")
        if now - value > MAX_PAST_AGE:
            raise ValueError(f"timestamp is more than {MAX_PAST_AGE.days} days old")
        return value

    @field_validator("original_timestamp", "sent_at")
    @classmethod
    def _device_time_in_range(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None:
            return value
        try:
            utc = value.astimezone(UTC)
        except OverflowError:
            utc = None
        if utc is None or not EARLIEST_DEVICE_TIME <= utc <= LATEST_DEVICE_TIME:
            raise ValueError(
                f"{_ALIASES.get(info.field_name or '', info.field_name)} must lie between "
                "1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z once converted to UTC"
            )
        return value

    @field_validator("properties", "traits", "context")
    @classmethod
    def _objects_bounded(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        if value is not None:
            name = info.field_name or "properties"
            keys = _count_keys(value, depth=1, path=name)
            if keys > MAX_PROPERTIES_KEYS:
                raise ValueError(f"{name} has {keys} keys; at most {MAX_PROPERTIES_KEYS} are allowed")
        return value


_ALIASES = {"original_timestamp": "originalTimestamp", "sent_at": "sentAt"}


def _count_keys(value: Any, depth: int, path: str = "properties") -> int:
    """Count object keys at every level, enforcing depth, key length and number range as it goes."""
    if depth > MAX_PROPERTIES_DEPTH:
        root = re.split(r"[.[]", path, maxsplit=1)[0]
        raise ValueError(f"{root} is nested more than {MAX_PROPERTIES_DEPTH} levels deep")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    count = len(value) if isinstance(value, dict) else 0
    for key, item in items:
        if isinstance(key, str) and len(key) > MAX_PROPERTY_KEY_LENGTH:
            raise ValueError(f"property key {key[:32]!r}... is longer than {MAX_PROPERTY_KEY_LENGTH} characters")
        where = f"{path}[{key}]" if isinstance(value, list) else f"{path}.{key}"
        if isinstance(item, dict | list):
            count += _count_keys(item, depth + 1, where)
        elif _outside_int64(item):
            raise ValueError(
                f"{where} is {item!r}: numbers must lie within the signed 64-bit integer range "
                f"[{INT64_MIN}, {INT64_MAX}]"
            )
    return count


def _outside_int64(value: Any) -> bool:
    # JSON parsing turns an integer beyond 64 bits into a float (losing digits), and such a
    # float cannot be told from a float literal of the same size, so both are refused.
    # A float of -2**63 may be the rounding of a smaller integer, so floats stop short of it.
    if isinstance(value, float):
        return not -(2.0**63) < value < 2.0**63
    return isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX


def nesting_depth(value: Any, *, limit: int) -> int:
    """How many levels of objects and arrays `value` has (0 for a scalar), counted up to `limit + 1`.

    Iterative and stopping once past `limit`, so a hostile document nested thousands of levels
    deep costs no recursion (Python's stack, or orjson's own serialisation limit) and little time.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        if depth > limit:
            return limit + 1
        deepest = max(deepest, depth)
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest
