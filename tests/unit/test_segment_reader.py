"""Reading a Segment request body: media types, gzip (bombs included), Segment's size limits, shapes."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from typing import Any

import orjson
import pytest

from ingest.errors import MalformedJsonError, PayloadTooLargeError, UnsupportedMediaTypeError
from ingest.segment.mapping import CallType
from ingest.segment.reader import (
    MAX_BATCH_BODY_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_MESSAGE_BYTES,
    SegmentBody,
    decode_body,
    oversized_message,
    read_segment_body,
)


def read(
    document: Any,
    *,
    call_type: CallType | None = None,
    encoding: str | None = None,
    content_type: str = "application/json",
) -> SegmentBody:
    body = orjson.dumps(document)
    if encoding == "gzip":
        body = gzip.compress(body)
    return read_segment_body(body, content_type=content_type, content_encoding=encoding, call_type=call_type)


def test_a_batch_body_gives_its_messages_sentat_context_and_write_key() -> None:
    parsed = read(
        {
            "batch": [{"type": "track"}, {"type": "page"}],
            "sentAt": "2026-11-27T12:00:00Z",
            "context": {"app": {"name": "shop"}},
            "integrations": {},
            "writeKey": "cs_sk_x",
        }
    )

    assert parsed.messages == [{"type": "track"}, {"type": "page"}]
    assert parsed.is_batch
    assert (parsed.sent_at, parsed.context, parsed.write_key) == (
        "2026-11-27T12:00:00Z",
        {"app": {"name": "shop"}},
        "cs_sk_x",
    )


def test_a_single_call_body_is_one_message_with_its_own_write_key() -> None:
    parsed = read({"userId": "u", "event": "e", "writeKey": "cs_bk_y"}, call_type="track")

    assert parsed.messages == [{"userId": "u", "event": "e", "writeKey": "cs_bk_y"}]
    assert not parsed.is_batch
    assert parsed.write_key == "cs_bk_y"


def test_a_write_key_only_inside_the_messages_counts_once_and_must_be_one() -> None:
    assert read({"batch": [{"writeKey": "k1"}, {"writeKey": "k1"}]}).write_key == "k1"
    with pytest.raises(MalformedJsonError, match="different writeKeys"):
        read({"batch": [{"writeKey": "k1"}, {"writeKey": "k2"}]})


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "text/plain;charset=UTF-8"]
)
def test_json_is_read_under_the_media_types_the_sdks_send(content_type: str) -> None:
    assert read({"batch": [{}]}, content_type=content_type).messages == [{}]


@pytest.mark.parametrize("content_type", ["application/xml", "multipart/form-data; boundary=x", ""])
def test_other_media_types_are_refused(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaTypeError):
        read({"batch": [{}]}, content_type=content_type)


def test_a_gzip_body_is_inflated() -> None:
    assert read({"batch": [{"type": "track"}]}, encoding="gzip").messages == [{"type": "track"}]


def test_another_content_encoding_is_refused() -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="Content-Encoding"):
        decode_body(b"x", "br", limit=100)


@pytest.mark.parametrize(
    "body", [b"not gzip at all", gzip.compress(b'{"batch": []}')[:-6], gzip.compress(b"{}") + gzip.compress(b"{}")]
)
def test_a_broken_or_truncated_or_doubled_gzip_stream_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(MalformedJsonError, match="gzip"):
        decode_body(body, "gzip", limit=MAX_BATCH_BODY_BYTES)


def test_a_gzip_bomb_is_refused_costing_memory_near_the_limit_not_its_inflated_size() -> None:
    # GIVEN 1 GiB of zeros compressed to about a megabyte... made smaller here: 64 MiB into ~64 KiB
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1024 * 1024)
    bomb = b"".join(compressor.compress(chunk) for _ in range(64)) + compressor.flush()
    assert len(bomb) < MAX_BATCH_BODY_BYTES

    # WHEN it is read, THEN it is refused as too large, at the limit
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLargeError, match="inflates to more than 512000 bytes"):
            decode_body(bomb, "gzip", limit=MAX_BATCH_BODY_BYTES)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # AND it was never inflated whole: memory measured, so inflate-then-check fails here
    assert peak < 8 * MAX_BATCH_BODY_BYTES, f"decoding peaked at {peak} bytes"


def test_a_batch_up_to_500_kib_is_read_and_one_byte_more_is_refused() -> None:
    def body_of(size: int) -> bytes:
        skeleton = orjson.dumps({"batch": [{"p": ""}]})
        return orjson.dumps({"batch": [{"p": "x" * (size - len(skeleton))}]})

    fits = body_of(MAX_BATCH_BODY_BYTES)
    assert len(fits) == MAX_BATCH_BODY_BYTES
    assert read_segment_body(fits, content_type="application/json", content_encoding=None, call_type=None)
    with pytest.raises(PayloadTooLargeError, match="512000"):
        read_segment_body(
            body_of(MAX_BATCH_BODY_BYTES + 1), content_type="application/json", content_encoding=None, call_type=None
        )
    with pytest.raises(PayloadTooLargeError):
        read_segment_body(
            gzip.compress(body_of(MAX_BATCH_BODY_BYTES + 1)),
            content_type="application/json",
            content_encoding="gzip",
            call_type=None,
        )


def test_a_single_call_is_limited_to_32_kib() -> None:
    skeleton = orjson.dumps({"p": ""})
    fits = orjson.dumps({"p": "x" * (MAX_MESSAGE_BYTES - len(skeleton))})
    too_big = orjson.dumps({"p": "x" * (MAX_MESSAGE_BYTES + 1 - len(skeleton))})

    assert read_segment_body(fits, content_type="application/json", content_encoding=None, call_type="track")
    with pytest.raises(PayloadTooLargeError, match="32768"):
        read_segment_body(too_big, content_type="application/json", content_encoding=None, call_type="track")


def test_a_batch_message_over_32_kib_or_too_deep_is_refused_by_itself() -> None:
    big = {"type": "track", "properties": {"p": "x" * MAX_MESSAGE_BYTES}}
    deep: dict[str, Any] = {"type": "track"}
    cursor = deep
    for _ in range(10):
        cursor["properties"] = {}
        cursor = cursor["properties"]

    [too_large] = oversized_message(big, "batch[0]")
    [too_deep] = oversized_message(deep, "batch[1]")

    assert (too_large.field, too_large.type) == ("batch[0]", "too_large")
    assert (too_deep.field, too_deep.type) == ("batch[1]", "too_deep")
    assert oversized_message({"type": "track", "properties": {"a": {"b": {"c": {"d": 1}}}}}, "batch[2]") == []


def test_more_messages_than_a_batch_may_hold_are_refused() -> None:
    with pytest.raises(PayloadTooLargeError, match=f"the limit is {MAX_BATCH_MESSAGES}"):
        read({"batch": [{}] * (MAX_BATCH_MESSAGES + 1)})


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "must be a JSON object"),
        ({"batch": {}}, '"batch" must be an array'),
        ({"batch": []}, "empty"),
        ({"batch": [{}], "tenant": "x"}, "unknown batch field"),
        ({"batch": [{}], "context": []}, "context must be an object"),
        ({"batch": [{}], "writeKey": 5}, "writeKey must be a string"),
    ],
)
def test_a_body_of_the_wrong_shape_is_a_bad_request(document: Any, message: str) -> None:
    with pytest.raises(MalformedJsonError, match=message):
        read(document)


def test_a_body_that_is_not_json_is_a_bad_request() -> None:
    with pytest.raises(MalformedJsonError, match="not valid JSON"):
        read_segment_body(b"{", content_type="text/plain", content_encoding=None, call_type=None)
