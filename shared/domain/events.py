"""The v1 event contract: what a producer may send to `POST /api/events`.

Plain pydantic, no Azure import. Limits are module constants so the OpenAPI document, the
validation and the docs all quote the same numbers.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
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
    field_validator,
)

__all__ = [
    "Event",
    "MAX_BATCH_EVENTS",
    "MAX_BODY_BYTES",
    "MAX_EVENT_BYTES",
    "MAX_FUTURE_SKEW",
    "MAX_PAST_AGE",
    "MAX_PROPERTIES_DEPTH",
    "MAX_PROPERTIES_KEYS",
    "MAX_PROPERTY_KEY_LENGTH",
]

MAX_BODY_BYTES = 1024 * 1024
MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_EVENTS = 500
MAX_PROPERTIES_DEPTH = 5
MAX_PROPERTIES_KEYS = 100
MAX_PROPERTY_KEY_LENGTH = 128
# Looser than the fraud rules' thresholds on purpose: a skewed but plausible clock is stored
# and flagged there, only an impossible one is refused here.
MAX_FUTURE_SKEW = timedelta(hours=1)
MAX_PAST_AGE = timedelta(days=7)

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
TenantId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2048)]


_RFC3339_START = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]")


def _rfc3339_string(value: object) -> object:
    # pydantic would also take a number, or a string of digits, as Unix time; the contract
    # says RFC 3339 text.
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339_START.match(value)):
        return value
    raise ValueError("timestamp must be an RFC 3339 string, e.g. 2026-01-31T12:00:00Z")


class Event(BaseModel):
    """One user-behaviour event as a producer sends it."""

    # Producers use the JSON names only (eventType); the Python names are not part of the API.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=False, validate_by_alias=True)

    event_type: Identifier = Field(alias="eventType", description="What happened, e.g. page_view, purchase.")
    tenant_id: TenantId = Field(alias="tenantId", description="The producer's tenant; the storage partition key.")
    event_id: UUID | None = Field(
        None,
        alias="eventId",
        description="With tenantId, the idempotency key end to end; the server makes one if absent.",
    )
    correlation_id: ShortText | None = Field(None, alias="correlationId")
    timestamp: Annotated[AwareDatetime, BeforeValidator(_rfc3339_string)] | None = Field(
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
            f"{MAX_PROPERTIES_DEPTH} deep, keys at most {MAX_PROPERTY_KEY_LENGTH} characters."
        ),
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

    @field_validator("properties")
    @classmethod
    def _properties_bounded(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            keys = _count_keys(value, depth=1)
            if keys > MAX_PROPERTIES_KEYS:
                raise ValueError(f"properties has {keys} keys; at most {MAX_PROPERTIES_KEYS} are allowed")
        return value


def _count_keys(value: Any, depth: int) -> int:
    """Count object keys at every level, enforcing depth and key length as it goes."""
    if depth > MAX_PROPERTIES_DEPTH:
        raise ValueError(f"properties are nested more than {MAX_PROPERTIES_DEPTH} levels deep")
    if isinstance(value, dict):
        count = len(value)
        for key, item in value.items():
            if len(key) > MAX_PROPERTY_KEY_LENGTH:
                raise ValueError(f"property key {key[:32]!r}... is longer than {MAX_PROPERTY_KEY_LENGTH} characters")
            if isinstance(item, dict | list):
                count += _count_keys(item, depth + 1)
        return count
    if isinstance(value, list):
        return sum(_count_keys(item, depth + 1) for item in value if isinstance(item, dict | list))
    return 0
