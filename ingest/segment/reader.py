"""A Segment API request body into our events: media type, gzip, Segment's size limits, shape, mapping.

Pure (bytes and header values in, events out), no HTTP library. Limits, from Segment's HTTP
Tracking API documentation ("Max request size"), measured on the decompressed body:

- a single call (`/v1/track`, ...): at most 32 KiB;
- a batch (`/v1/batch`): at most 500 KiB, each message at most 32 KiB (a larger message is
  rejected by itself, its neighbours are not), at most `MAX_BATCH_MESSAGES` messages.

Segment answers an oversized request with 400; we answer 413 with the reason, which no SDK
retries either. A gzip body is inflated in bounded steps and refused (413) as soon as it
outgrows the limit, so a small compressed body cannot make the server inflate gigabytes. The
Functions host hands the compressed bytes through untouched (it has no request decompression).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from ingest.errors import MalformedJsonError, PayloadTooLargeError, UnsupportedMediaTypeError
from ingest.segment.mapping import CallType, map_message
from ingest.service import BodyReader, IngestRequest
from ingest.validation import FieldError, ParsedBody, Unmappable
from shared.domain.events import MAX_BATCH_EVENTS, MAX_PROPERTIES_DEPTH, nesting_depth

__all__ = [
    "MAX_BATCH_BODY_BYTES",
    "MAX_BATCH_MESSAGES",
    "MAX_MESSAGE_BYTES",
    "SegmentBody",
    "SegmentBodyReader",
    "decode_body",
    "oversized_message",
    "read_segment_body",
    "require_segment_media_type",
    "segment_body_reader",
]

MAX_MESSAGE_BYTES: Final = 32 * 1024
"""Segment: 32 KB per call, and per message of a batch (the Python SDK's `MAX_MSG_SIZE = 32 << 10`)."""
MAX_BATCH_BODY_BYTES: Final = 500 * 1024
"""Segment: 500 KB per batch request (its SDKs cut batches below it: Python at 475,000 bytes)."""
MAX_BATCH_MESSAGES: Final = MAX_BATCH_EVENTS
"""Messages per batch: Segment takes 2,500; we take as many as `POST /api/events` does, because
a request costs its number of events against the rate limits, whose state is sized for that
batch. Every Segment SDK's default batch is far smaller (Python and RudderStack 100, Node 15)."""

_MEDIA_TYPES: Final = frozenset({"application/json", "text/plain", "application/x-www-form-urlencoded"})
_BATCH_FIELDS: Final = frozenset({"batch", "sentAt", "context", "integrations", "writeKey", "_metadata", "timestamp"})
_INFLATE_STEP: Final = 64 * 1024


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SegmentBody:
    """What a request body holds: its messages and what the batch says about all of them."""

    messages: list[Any]
    is_batch: bool
    sent_at: Any = None
    """The batch's `sentAt` (a single call's is in its message)."""
    timestamp: Any = None
    """The batch's own `timestamp`: rudder-sdk-node's flush time, beside its `sentAt`."""
    context: dict[str, Any] | None = None
    """The batch's `context`, merged under each message's."""
    write_key: str | None = None
    """The body's `writeKey`, if it has one (analytics.js and the Segment SDKs send it)."""


def require_segment_media_type(content_type: str | None) -> None:
    """JSON under any of the media types Segment's SDKs send.

    `application/json` (the server SDKs), `text/plain` (analytics.js, to keep the request
    "simple" for CORS) and `application/x-www-form-urlencoded` (rudder-sdk-node, which sends
    JSON under it); Segment itself reads JSON whatever the header says.
    """
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in _MEDIA_TYPES:
        shown = content_type or "none"
        raise UnsupportedMediaTypeError(
            f"Content-Type must be application/json or text/plain (got {shown}); the body is JSON either way"
        )


def decode_body(body: bytes, content_encoding: str | None, *, limit: int) -> bytes:
    """The body as sent before compression: inflated when `Content-Encoding: gzip`, at most `limit` bytes."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("identity", ""):
        if len(body) > limit:
            raise PayloadTooLargeError(f"the request body is {len(body)} bytes; the limit is {_size(limit)}")
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise UnsupportedMediaTypeError(f"Content-Encoding must be gzip or none (got {content_encoding})")
    return _gunzip(body, limit)


def _gunzip(body: bytes, limit: int) -> bytes:
    # wbits 16 + MAX_WBITS: a gzip header and trailer, checked (CRC, length).
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    pending = body
    try:
        while True:
            # Never more than one step past the limit in memory, however well the body compresses.
            out += inflater.decompress(pending, _INFLATE_STEP)
            if len(out) > limit:
                raise PayloadTooLargeError(f"the request body inflates to more than {_size(limit)}, the limit")
            pending = inflater.unconsumed_tail
            if not pending:
                break
        out += inflater.flush()
    except zlib.error as exc:
        raise MalformedJsonError(f"the request body is not valid gzip: {exc}") from None
    if len(out) > limit:
        raise PayloadTooLargeError(f"the request body inflates to more than {_size(limit)}, the limit")
    if not inflater.eof:
        raise MalformedJsonError("the request body is not valid gzip: it ends before the gzip stream does")
    if inflater.unused_data:
        # A second gzip member (concatenated streams): allowed by RFC 1952, sent by no SDK.
        raise MalformedJsonError("the request body holds more than one gzip stream")
    return bytes(out)


def read_segment_body(
    body: bytes, *, content_type: str | None, content_encoding: str | None, call_type: CallType | None
) -> SegmentBody:
    """Parse a Segment request body: a batch (`call_type` None, `/v1/batch`) or one call."""
    require_segment_media_type(content_type)
    limit = MAX_BATCH_BODY_BYTES if call_type is None else MAX_MESSAGE_BYTES
    document = _parse_json(decode_body(body, content_encoding, limit=limit))
    if not isinstance(document, dict):
        raise MalformedJsonError("the request body must be a JSON object")
    if call_type is not None:
        return SegmentBody([document], is_batch=False, write_key=_write_key(document.get("writeKey")))
    return _batch(document)


def _batch(document: dict[str, Any]) -> SegmentBody:
    messages = document.get("batch")
    if not isinstance(messages, list):
        raise MalformedJsonError('a batch body is {"batch": [messages...]}: "batch" must be an array')
    if not messages:
        raise MalformedJsonError("the batch is empty; send at least one message")
    if len(messages) > MAX_BATCH_MESSAGES:
        raise PayloadTooLargeError(f"the batch has {len(messages)} messages; the limit is {MAX_BATCH_MESSAGES}")
    unknown = sorted(str(name) for name in document if name not in _BATCH_FIELDS)
    if unknown:
        raise MalformedJsonError(
            f"unknown batch field(s) {', '.join(unknown)}: "
            "a batch has batch, sentAt, timestamp, context, integrations, writeKey"
        )
    context = document.get("context")
    if context is not None and not isinstance(context, dict):
        raise MalformedJsonError("the batch's context must be an object")
    return SegmentBody(
        messages,
        is_batch=True,
        sent_at=document.get("sentAt"),
        timestamp=document.get("timestamp"),
        context=context,
        write_key=_write_key(document.get("writeKey")) or _items_write_key(messages),
    )


def oversized_message(message: Any, path: str) -> list[FieldError]:
    """Why one batch message is refused by size or depth alone (empty when it is not).

    Depth first: measuring serialises the message, which one nested deep enough cannot survive.
    A message nests one level above its `properties`, which may be `MAX_PROPERTIES_DEPTH` deep.
    """
    if nesting_depth(message, limit=MAX_PROPERTIES_DEPTH + 1) > MAX_PROPERTIES_DEPTH + 1:
        return [FieldError(path, f"the message is nested more than {MAX_PROPERTIES_DEPTH} levels deep", "too_deep")]
    size = len(orjson.dumps(message))
    if size > MAX_MESSAGE_BYTES:
        return [FieldError(path, f"the message is {size} bytes; the limit is {_size(MAX_MESSAGE_BYTES)}", "too_large")]
    return []


def _parse_json(body: bytes) -> Any:
    if not body.strip():
        raise MalformedJsonError("the request body is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJsonError(f"the request body is not valid JSON: {exc}") from None


def _write_key(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedJsonError("writeKey must be a string")
    return value


def _items_write_key(messages: list[Any]) -> str | None:
    # analytics.js also writes the key into each message; one request speaks for one key.
    keys = {_write_key(message.get("writeKey")) for message in messages if isinstance(message, dict)} - {None}
    if len(keys) > 1:
        raise MalformedJsonError("the batch's messages carry different writeKeys; send one key per request")
    return next(iter(keys), None)


def _call_type_of(message: Any) -> str | None:
    kind = message.get("type") if isinstance(message, dict) else None
    return kind if isinstance(kind, str) else None


def _size(limit: int) -> str:
    return f"{limit} bytes ({limit // 1024} KiB)"


@dataclass(frozen=True, slots=True)
class SegmentBodyReader:
    """The body reader `IngestService.ingest` runs for one Segment API request (`segment_body_reader`)."""

    call_type: CallType | None
    content_encoding: str | None
    clock: Callable[[], datetime] = _now
    api: str = "segment"
    """The API the kept events name (`shared.domain.live_events.LiveEvent.api`)."""

    def __call__(self, request: IngestRequest) -> ParsedBody:
        call_type = self.call_type
        body = read_segment_body(
            request.body,
            content_type=request.content_type,
            content_encoding=self.content_encoding,
            call_type=call_type,
        )
        received_at = self.clock()
        items: list[Any] = []
        for index, message in enumerate(body.messages):
            path = f"batch[{index}]" if body.is_batch else ""
            errors = oversized_message(message, path) if body.is_batch else []
            mapped = errors or map_message(
                message,
                received_at=received_at,
                call_type=call_type,
                batch_sent_at=body.sent_at,
                batch_timestamp=body.timestamp,
                batch_context=body.context,
                path=path,
            )
            if isinstance(mapped, list):
                # The message as sent goes with its errors, for the kept events (never queued).
                items.append(Unmappable(mapped, item=message, event_type=call_type or _call_type_of(message)))
            else:
                items.append(mapped)
        return ParsedBody(items, is_batch=body.is_batch, write_key=body.write_key)


def segment_body_reader(
    call_type: CallType | None, *, content_encoding: str | None, clock: Callable[[], datetime] = _now
) -> BodyReader:
    """The body reader `IngestService.ingest` runs for one Segment API request.

    Each message becomes our event (`ingest.segment.mapping`) or an `Unmappable` with its field
    errors, by its index. The receive time of Segment's clock-skew correction is read here, when
    the body is read, a moment before the use case stamps its own.
    """
    return SegmentBodyReader(call_type, content_encoding, clock)
