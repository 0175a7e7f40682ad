"""Fixtures the embedded analytics store's test modules share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.adapters.analytics.embedded_analytics import EmbeddedAnalyticsStore
from shared.adapters.analytics.test_embedded_analytics import ARRIVED


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """Where the store's file goes."""
    return tmp_path / "analytics.sqlite3"


@pytest.fixture
async def store(path: Path) -> AsyncIterator[EmbeddedAnalyticsStore]:
    """A store on `path` whose clock stands at `ARRIVED`, closed after the test."""
    opened = EmbeddedAnalyticsStore(path, clock=ARRIVED.timestamp)
    yield opened
    await opened.close()
