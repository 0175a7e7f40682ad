"""Fixtures shared by every test suite."""

from __future__ import annotations

import pytest

from tests.spans import RecordedSpans, recorded_spans


@pytest.fixture
def spans() -> RecordedSpans:
    """Spans recorded by the process-wide SDK tracer provider during this test."""
    return recorded_spans()
