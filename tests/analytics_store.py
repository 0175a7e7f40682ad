"""Analytics rows and an embedded analytics folder for tests, as the change feed writes them."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from shared.adapters.analytics.embedded_analytics import ANALYTICS_FILE, EmbeddedAnalyticsStore
from shared.domain.analytics import AnalyticsRow

__all__ = ["analytics_folder", "analytics_row"]


def analytics_row(
    n: int,
    moment: datetime,
    *,
    processed_after: timedelta = timedelta(0),
    stored_after: timedelta = timedelta(0),
    **changes: Any,
) -> AnalyticsRow:
    """Event `n` of tenant acme, a page view received at `moment`, with `changes` on top."""
    fields: dict[str, Any] = {
        "event_id": f"00000000-0000-4000-8000-{n:012d}",
        "tenant_id": "acme",
        "event_type": "page_view",
        "timestamp": moment,
        "received_at": moment,
        "processed_at": moment + processed_after,
        "stored_at": moment + stored_after,
        "correlation_id": f"corr-{n}",
        "user_id": None,
        "session_id": None,
        "url": "/home",
        "client_network": "203.0.113.0/24",
        "browser": "Firefox",
        "os": "Linux",
        "device": None,
        "is_bot": False,
        "fraud_score": 0.0,
        "suspicious": False,
        "fraud_reasons": (),
        "properties": {"n": n},
    }
    fields.update(changes)
    return AnalyticsRow(**fields)


def analytics_folder(tmp_path: Path) -> Path:
    """A data folder holding an (empty) analytics store, as `cloudscale run` leaves it."""
    folder = tmp_path / "data"
    folder.mkdir()

    async def create() -> None:
        store = EmbeddedAnalyticsStore(folder / ANALYTICS_FILE)
        await store.check()
        await store.close()

    asyncio.run(create())
    return folder
