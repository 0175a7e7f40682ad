"""Turning a queue message body back into an `Envelope`, or saying why it never can be.

A message that fails here fails the same way on every delivery (its bytes do not change),
so it is *poison*: retrying cannot help, and it goes to the dead-letter queue with one of
the reasons of `shared.domain.dead_letter_reasons` and a description naming what is wrong.
"""

from __future__ import annotations

import secrets
from typing import Final

import orjson
from pydantic import ValidationError

from shared.domain.client_identity import ClientKeyer, anonymize_address
from shared.domain.dead_letter_reasons import SCHEMA_INVALID, UNDECODABLE, UNKNOWN_SCHEMA_VERSION
from shared.domain.envelope import SCHEMA_VERSION, Envelope

__all__ = ["PoisonMessageError", "decode_envelope"]

# Dead-letter descriptions are shown by `cloudscale dlq` and kept by Service Bus (which caps
# them at 4 KiB); the field paths and messages fit well within this.
MAX_DESCRIPTION_CHARS = 1024
MAX_LISTED_ERRORS = 10


class PoisonMessageError(Exception):
    """The message can never be processed; `reason` is the dead-letter reason code."""

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(f"{reason}: {description}")
        self.reason = reason
        self.description = description[:MAX_DESCRIPTION_CHARS]


def decode_envelope(body: bytes) -> Envelope:
    """Parse and validate a queue message body; raise `PoisonMessageError` if it is not an envelope.

    Version 2 is read as is; version 1 (raw `clientIp`) is upgraded first, so messages queued
    by an older ingest are still processed.

    No clock-skew rule here: the timestamp was validated when ingest accepted the event, and
    a message replayed from the dead-letter queue days later is still the same event.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PoisonMessageError(UNDECODABLE, f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PoisonMessageError(UNDECODABLE, f"the body is a JSON {type(data).__name__}, not an object")
    version = data.get("schemaVersion")
    if version == _LEGACY_SCHEMA_VERSION:
        data = _upgrade_v1(data)
        version = data["schemaVersion"]
    if version != SCHEMA_VERSION:
        raise PoisonMessageError(
            UNKNOWN_SCHEMA_VERSION,
            f"schemaVersion {repr(version)[:32]} is not one this version of the process stage reads "
            f"({_LEGACY_SCHEMA_VERSION} or {SCHEMA_VERSION})",
        )
    try:
        envelope = Envelope.model_validate(data)
    except ValidationError as exc:
        raise PoisonMessageError(SCHEMA_INVALID, _describe(exc)) from None
    if envelope.event.event_id is None:
        raise PoisonMessageError(SCHEMA_INVALID, "event.eventId: required on the queue (ingest always sets it)")
    return envelope


_LEGACY_SCHEMA_VERSION: Final = 1
# Keys of a version-1 client are comparable within this process only: enough for the
# distinct-users signal over the messages queued before an upgrade.
_LEGACY_KEY_SECRET: Final = secrets.token_bytes(32)


def _upgrade_v1(data: dict[str, object]) -> dict[str, object]:
    """A version-1 body as version 2: its raw `clientIp` becomes a network and a keyed hash."""
    upgraded = {name: value for name, value in data.items() if name != "clientIp"}
    upgraded["schemaVersion"] = SCHEMA_VERSION
    ip = data.get("clientIp")
    if isinstance(ip, str):
        upgraded["clientNetwork"] = anonymize_address(ip)
        upgraded["clientKey"] = ClientKeyer(_LEGACY_KEY_SECRET).identify(ip).key
    return upgraded


def _describe(error: ValidationError) -> str:
    # Field paths and messages only: the inputs may hold personal data and must not reach
    # the dead-letter description or the log.
    problems = [
        f"{'.'.join(str(part) for part in item['loc']) or 'body'}: {item['msg']}"
        for item in error.errors(include_input=False, include_url=False)
    ]
    more = len(problems) - MAX_LISTED_ERRORS
    listed = "; ".join(problems[:MAX_LISTED_ERRORS])
    return listed + (f"; and {more} more" if more > 0 else "")
