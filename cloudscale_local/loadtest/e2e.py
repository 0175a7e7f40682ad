"""End-to-end latency: when the accepted events were stored and reached analytics.

Read from the local host's analytics store (`<data_dir>/analytics.sqlite3`, table `events`),
opened read-only so a measurement can never change it, beside the live host writing it.
`StoredAt` and `AnalyticsAt` there are RFC 3339 UTC text from the host's wall clock, which
on one machine is the generator's clock too.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from cloudscale_local.loadtest.latency import summarize
from cloudscale_local.loadtest.report import EndToEnd
from shared.adapters.analytics.embedded_analytics import ANALYTICS_FILE

__all__ = ["measure_end_to_end"]

FILE_WAIT_SECONDS = 5.0
"""How long to wait for the analytics file to appear (a fresh host creates it on its first write)."""
POLL_SECONDS = 0.2
_CHUNK = 500  # ids per query: well under SQLite's bound variables limit


def measure_end_to_end(
    data_dir: Path | None,
    event_ids: Sequence[str],
    accepted_at: Sequence[float],
    *,
    drain_seconds: float,
    sampled: bool = False,
    on_wait: Callable[[int, int], None] | None = None,
) -> EndToEnd:
    """Wait up to `drain_seconds` for `event_ids` to reach analytics; summarise their latencies.

    `accepted_at[k]` is the Unix time the 202 for `event_ids[k]` arrived. `on_wait(found,
    expected)` is called after each look at the store.
    """
    if data_dir is None:
        return EndToEnd(measured=False, reason="no data folder given")
    if not event_ids:
        return EndToEnd(measured=False, reason="no event was accepted")
    path = data_dir / ANALYTICS_FILE
    began = time.monotonic()
    deadline = began + drain_seconds
    while not path.exists():
        if time.monotonic() >= min(deadline, began + FILE_WAIT_SECONDS):
            return EndToEnd(measured=False, reason=f"no analytics store at {path}")
        time.sleep(POLL_SECONDS)

    accepted = dict(zip(event_ids, accepted_at, strict=True))
    found: dict[str, tuple[str, str]] = {}
    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)) as db:
        pending = list(accepted)
        while True:
            found.update(_look_up(db, pending))
            pending = [event_id for event_id in pending if event_id not in found]
            if on_wait is not None:
                on_wait(len(found), len(accepted))
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)

    to_stored = [(_unix(stored) - accepted[event_id]) * 1000 for event_id, (stored, _) in found.items()]
    to_analytics = [(_unix(arrived) - accepted[event_id]) * 1000 for event_id, (_, arrived) in found.items()]
    return EndToEnd(
        measured=True,
        tracked=len(accepted),
        sampled=sampled,
        arrived=len(found),
        missing=len(accepted) - len(found),
        waited_seconds=round(time.monotonic() - began, 3),
        to_stored_ms=summarize(to_stored),
        to_analytics_ms=summarize(to_analytics),
    )


def _look_up(db: sqlite3.Connection, event_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """StoredAt and AnalyticsAt of those of `event_ids` in the store."""
    rows: dict[str, tuple[str, str]] = {}
    for offset in range(0, len(event_ids), _CHUNK):
        chunk = event_ids[offset : offset + _CHUNK]
        marks = ",".join("?" * len(chunk))
        try:
            cursor = db.execute(f"SELECT EventId, StoredAt, AnalyticsAt FROM events WHERE EventId IN ({marks})", chunk)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # created with the store's first write
                return rows
            raise
        for event_id, stored_at, analytics_at in cursor:
            rows[str(event_id)] = (str(stored_at), str(analytics_at))
    return rows


def _unix(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339).timestamp()
