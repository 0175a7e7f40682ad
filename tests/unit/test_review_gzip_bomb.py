"""A gzip bomb is refused without being inflated whole: measured, so inflate-then-check fails it (found in review).

`tests/unit/test_segment_reader.py::test_a_gzip_bomb_is_refused_without_inflating_it_whole` asserts only
the 413, which an implementation that inflates all 64 MiB first would pass too.
"""

from __future__ import annotations

import tracemalloc
import zlib

import pytest

from ingest.errors import PayloadTooLargeError
from ingest.segment.reader import MAX_BATCH_BODY_BYTES, decode_body


def test_a_gzip_bomb_costs_memory_near_the_limit_not_its_inflated_size() -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1024 * 1024)
    bomb = b"".join(compressor.compress(chunk) for _ in range(64)) + compressor.flush()

    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLargeError):
            decode_body(bomb, "gzip", limit=MAX_BATCH_BODY_BYTES)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 8 * MAX_BATCH_BODY_BYTES, f"decoding peaked at {peak} bytes"
