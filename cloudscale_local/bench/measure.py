"""What the benchmark reads from the machine and the host's data folder while a scenario runs.

CPU and memory are read from Linux's /proc for a whole process tree (the host and its
instances), so they are None elsewhere. The stores are read from the host's SQLite files,
opened read-only beside the live host.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from shared.adapters.analytics.embedded_analytics import ANALYTICS_FILE
from shared.adapters.event_store.embedded_event_store import EVENTS_FILE

__all__ = [
    "MemorySampler",
    "count_rows",
    "process_tree",
    "queue_depth",
    "received_to_analytics_ms",
    "tree_cpu_seconds",
    "tree_rss_bytes",
]


def process_tree(roots: list[int]) -> list[int]:
    """`roots` and every live descendant of them."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    pending = list(roots)
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def tree_cpu_seconds(roots: list[int]) -> float | None:
    """User plus system CPU of the tree so far, children already reaped by a root included."""
    total = 0.0
    seen = False
    for pid in process_tree(roots):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        seen = True
        # After the command name: utime, stime, cutime, cstime are fields 14-17 of stat.
        total += int(fields[11]) + int(fields[12])
        if pid in roots:
            total += int(fields[13]) + int(fields[14])
    return total / os.sysconf("SC_CLK_TCK") if seen else None


def tree_rss_bytes(roots: list[int]) -> int | None:
    """Resident memory of the whole tree (the sum of each process's RSS)."""
    total = 0
    seen = False
    page = os.sysconf("SC_PAGE_SIZE")
    for pid in process_tree(roots):
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
            seen = True
        except (OSError, IndexError, ValueError):
            continue
    return total if seen else None


@dataclass
class MemorySampler:
    """Samples the tree's resident memory every `interval` seconds on a thread, until stopped."""

    roots: list[int]
    interval: float = 0.5
    samples: list[tuple[float, int]] = field(default_factory=list)
    """(seconds since start, bytes)."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> MemorySampler:
        began = time.monotonic()

        def run() -> None:
            while True:
                rss = tree_rss_bytes(self.roots)
                if rss is not None:
                    self.samples.append((time.monotonic() - began, rss))
                if self._stop.wait(self.interval):
                    return

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def count_rows(data_dir: Path, which: str) -> int:
    """Rows in the event store (`which="store"`) or the analytics table (`"analytics"`); 0 before the first write."""
    path = data_dir / (EVENTS_FILE if which == "store" else ANALYTICS_FILE)
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0
            raise


def received_to_analytics_ms(data_dir: Path) -> tuple[list[float], float | None]:
    """For every event in analytics: `AnalyticsAt - ReceivedAt` in ms; and the latest `AnalyticsAt` (Unix s).

    `ReceivedAt` is ingest's clock just before it queues the event and answers 202, so this is
    the 202-to-analytics time plus at most the request's own ingest latency (same machine, same clock).
    """
    path = data_dir / ANALYTICS_FILE
    if not path.exists():
        return [], None
    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)) as db:
        rows = db.execute("SELECT ReceivedAt, AnalyticsAt FROM events").fetchall()
    latencies: list[float] = []
    last: float | None = None
    for received, arrived in rows:
        at = datetime.fromisoformat(str(arrived)).timestamp()
        latencies.append((at - datetime.fromisoformat(str(received)).timestamp()) * 1000)
        last = at if last is None or at > last else last
    return latencies, last


def queue_depth(url: str) -> float | None:
    """`cloudscale_queue_depth` from the host's /metrics, or None if it is not there."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:  # loopback only
            text = response.read().decode()
    except OSError:
        return None
    match = re.search(r"^cloudscale_queue_depth\{[^}]*\} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None
