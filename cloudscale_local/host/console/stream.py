"""`GET /dashboard/stream`: one server-sent-events connection per page carries every live update.

- `stats`, each second: the charts' numbers (`StatsSampler`, one reading shared by every page);
- `event`, one per kept live event as it is stored (`EmbeddedLiveEvents.after`, looked at every
  `POLL_SECONDS`; the store is shared by every instance, so a page sees each instance's events),
  with the event's `seq` as its SSE id: a browser that reconnects sends it back as
  `Last-Event-ID` and misses nothing still kept. A new connection first gets the newest
  `BACKLOG` kept events, oldest first.

The browser never polls. A stream ends when the host shuts down (`ConsoleStreams.close`, called
as uvicorn starts its shutdown): an open page must not hold Ctrl-C up for the whole grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from cloudscale_local.host.console.sources import ConsoleSources
from cloudscale_local.host.console.stats import READ_EVERY_SECONDS, StatsSampler
from shared.adapters.live_events.embedded import EmbeddedLiveEvents
from shared.domain.live_events import LiveEvent

__all__ = ["BACKLOG", "POLL_SECONDS", "ConsoleStreams"]

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2
BACKLOG = 100
_PAGE = 500
"""At most this many events per look: a flood is sent over several looks, not at once."""
_RETRY_MILLISECONDS = 2000


class ConsoleStreams:
    """The live streams of one host process, and the switch that ends them all."""

    def __init__(self, sources: ConsoleSources) -> None:
        self._sources = sources
        self._sampler = StatsSampler(sources.read_metrics)
        self._closing = asyncio.Event()

    def close(self) -> None:
        """End every stream now (and answer any new one with an empty stream)."""
        self._closing.set()

    async def endpoint(self, request: Request) -> Response:
        """The SSE response for one page."""
        return StreamingResponse(
            self._messages(_last_event_id(request)),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def _messages(self, last_seen: int | None) -> AsyncIterator[bytes]:
        yield f"retry: {_RETRY_MILLISECONDS}\n\n".encode()
        log = self._sources.live_events()
        seq = 0
        if log is not None:
            if last_seen is not None and last_seen > await log.last_seq():
                # Seen past the newest kept: the file was made anew (a cleared data folder) since.
                last_seen = None
            if last_seen is None:
                backlog = list(reversed(await log.latest(BACKLOG)))
                for event in backlog:
                    yield _event_message(event)
                seq = backlog[-1].seq if backlog else await log.last_seq()
            else:
                seq = last_seen
        next_stats = time.monotonic()
        while not self._closing.is_set():
            if time.monotonic() >= next_stats:
                next_stats = time.monotonic() + READ_EVERY_SECONDS
                stats = await self._stats()
                if stats is not None:
                    yield b"event: stats\ndata: " + stats + b"\n\n"
            if log is not None:
                for event in await self._new_events(log, seq):
                    seq = event.seq
                    yield _event_message(event)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), POLL_SECONDS)

    async def _stats(self) -> bytes | None:
        try:
            return orjson.dumps(await self._sampler.latest())
        except Exception:
            # A chart missing a second is better than a page that stops updating.
            logger.warning("the console could not read the host's metrics", exc_info=True)
            return None

    @staticmethod
    async def _new_events(log: EmbeddedLiveEvents, seq: int) -> list[LiveEvent]:
        try:
            return await log.after(seq, _PAGE)
        except (sqlite3.Error, OSError):
            logger.warning("the console could not read the live events", exc_info=True)
            return []


def _event_message(event: LiveEvent) -> bytes:
    return b"event: event\nid: %d\ndata: %s\n\n" % (event.seq, orjson.dumps(event.to_dict()))


def _last_event_id(request: Request) -> int | None:
    text = request.headers.get("last-event-id", "").strip()
    return int(text) if text.isascii() and text.isdigit() else None
