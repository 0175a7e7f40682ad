"""What the console reads, handed in by the host (`cloudscale_local.host.server`).

Each is a callable so that a store is opened only when a page first asks for it, and the
console never imports the composition root: the host passes its container's parts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shared.adapters.live_events.embedded import EmbeddedLiveEvents
from shared.ports import DeadLetterBrowser, EventStore

__all__ = ["ConsoleSources"]


@dataclass(frozen=True, slots=True)
class ConsoleSources:
    """Where the console's data comes from."""

    live_events: Callable[[], EmbeddedLiveEvents | None]
    """The kept live events, shared by every instance (None: not kept, e.g. `CLOUDSCALE_LIVE_EVENTS_KEPT=0`)."""
    event_store: Callable[[], EventStore]
    """The event store, for an event's stored document and fraud result."""
    dead_letters: Callable[[], DeadLetterBrowser]
    """The dead-letter browser `cloudscale dlq` uses; may raise `PortError` (no queue file yet)."""
    read_metrics: Callable[[], Awaitable[bytes]]
    """The Prometheus text `/metrics` serves: the run's totals across instances."""
