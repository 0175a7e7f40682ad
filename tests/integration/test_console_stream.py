"""The dashboard's live stream over a real live-event log: where a reconnecting page starts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request

from cloudscale_local.host.console.sources import ConsoleSources
from cloudscale_local.host.console.stream import ConsoleStreams
from shared.adapters.live_events.embedded import LIVE_EVENTS_FILE, EmbeddedLiveEvents
from tests.integration.test_live_events_store import rejected


async def test_a_page_reconnecting_past_the_newest_kept_event_gets_the_backlog_of_a_file_made_anew(
    tmp_path: Path,
) -> None:
    # GIVEN a page that had seen event 50, and a host restarted on a cleared data folder (seq from 1 again)
    log = EmbeddedLiveEvents(tmp_path / LIVE_EVENTS_FILE, 100)
    log.record([rejected(1, {"eventType": "after-the-clear"})])
    await log.flush()

    async def no_metrics() -> bytes:
        return b""

    def unused() -> Any:
        raise AssertionError("not read by the stream")

    streams = ConsoleStreams(ConsoleSources(log_source(log), unused, unused, no_metrics))
    scope = {"type": "http", "method": "GET", "path": "/dashboard/stream", "headers": [(b"last-event-id", b"50")]}
    # WHEN its browser reconnects with Last-Event-ID: 50
    response = await streams.endpoint(Request(scope))
    messages = response.body_iterator  # type: ignore[attr-defined]
    try:
        # THEN the new file's events come (not only those past 50, which would be none for a long while)
        async with asyncio.timeout(5):
            async for chunk in messages:
                text = chunk if isinstance(chunk, str) else bytes(chunk).decode()
                if text.startswith("event: event"):
                    assert "after-the-clear" in text
                    break
    finally:
        streams.close()
        await messages.aclose()
        await log.close()


def log_source(log: EmbeddedLiveEvents) -> Callable[[], EmbeddedLiveEvents | None]:
    return lambda: log
