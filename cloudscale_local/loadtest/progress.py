"""Live progress: workers' snapshots merged into one `Progress`, and the line that shows it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from cloudscale_local.loadtest.latency import LatencyHistogram
from cloudscale_local.loadtest.worker import WorkerSnapshot

__all__ = ["Progress", "ProgressAggregator", "ProgressPrinter"]


@dataclass(frozen=True)
class Progress:
    """The run so far. `phase`: `sending`, then `analytics` while waiting for end-to-end data."""

    phase: str
    elapsed: float
    """Seconds since the first request was due."""
    sent: int
    achieved_rps: float
    ok: int
    """2xx answers."""
    rate_limited: int
    """429 answers."""
    server_errors: int
    """5xx answers."""
    errors: int
    """Transport failures and timeouts."""
    other: int
    """Any other status (4xx but 429, 1xx, 3xx)."""
    in_flight: int
    p99_ms: float | None
    """Estimated (within about 1%) over every answer so far."""
    e2e_found: int | None = None
    """While waiting for analytics: accepted events seen there so far, of `e2e_expected`."""
    e2e_expected: int | None = None

    def line(self) -> str:
        """The progress as one short line of text."""
        p99 = "-" if self.p99_ms is None else f"{self.p99_ms:.1f} ms"
        text = (
            f"{self.elapsed:6.1f}s sent {self.sent} ({self.achieved_rps:.0f}/s) | 2xx {self.ok} 429 {self.rate_limited}"
            f" 5xx {self.server_errors} err {self.errors}"
            + (f" other {self.other}" if self.other else "")
            + f" | in flight {self.in_flight} | p99 {p99}"
        )
        if self.phase == "analytics":
            text += f" | in analytics {self.e2e_found}/{self.e2e_expected}"
        return text


@dataclass
class _WorkerState:
    sent: int = 0
    elapsed: float = 0.0
    status_counts: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0


class ProgressAggregator:
    """Merges `workers` workers' snapshots; calls `on_progress` at most every `interval` seconds."""

    def __init__(
        self,
        on_progress: Callable[[Progress], None] | None,
        *,
        workers: int = 1,
        start: float | None = None,
        interval: float = 1.0,
    ) -> None:
        self._on_progress = on_progress
        self._expected_workers = workers
        self._workers: dict[int, _WorkerState] = {}
        self._histogram = LatencyHistogram()
        self._interval = interval
        self._last_emit = float("-inf")
        self.start = time.perf_counter() if start is None else start
        """perf_counter time at which the run starts (set it when the start is decided)."""

    def update(self, snapshot: WorkerSnapshot) -> None:
        """Take a worker's snapshot; emit progress if the interval has passed."""
        state = self._workers.setdefault(snapshot.worker, _WorkerState())
        state.sent = snapshot.sent
        state.elapsed = snapshot.elapsed
        state.status_counts = snapshot.status_counts
        state.in_flight = snapshot.in_flight
        self._histogram.add(snapshot.new_latencies_ms)
        # Not before every worker has been heard from: a partial sum would show a partial rate.
        heard_from_all = len(self._workers) >= self._expected_workers
        if heard_from_all and time.perf_counter() - self._last_emit >= self._interval:
            self.emit()

    def emit(self, phase: str = "sending", *, e2e_found: int | None = None, e2e_expected: int | None = None) -> None:
        """Call `on_progress` with the merged state now."""
        if self._on_progress is None:
            return
        self._last_emit = time.perf_counter()
        self._on_progress(self.current(phase, e2e_found=e2e_found, e2e_expected=e2e_expected))

    def current(
        self, phase: str = "sending", *, e2e_found: int | None = None, e2e_expected: int | None = None
    ) -> Progress:
        """The merged state of every worker heard from."""
        counts: dict[str, int] = {}
        for state in self._workers.values():
            for key, value in state.status_counts.items():
                counts[key] = counts.get(key, 0) + value
        sent = sum(state.sent for state in self._workers.values())
        elapsed = max(0.0, time.perf_counter() - self.start)
        # Each worker's rate by its own snapshot's clock: snapshots arrive up to a second
        # late, and sent-so-far over the parent's elapsed time would understate the rate.
        achieved = sum(state.sent / state.elapsed for state in self._workers.values() if state.elapsed > 0)
        by_class = _by_class(counts)
        return Progress(
            phase=phase,
            elapsed=elapsed,
            sent=sent,
            achieved_rps=achieved,
            ok=by_class["2xx"],
            rate_limited=by_class["429"],
            server_errors=by_class["5xx"],
            errors=by_class["error"],
            other=by_class["other"],
            in_flight=sum(state.in_flight for state in self._workers.values()),
            p99_ms=self._histogram.percentile(99),
            e2e_found=e2e_found,
            e2e_expected=e2e_expected,
        )


def _by_class(counts: dict[str, int]) -> dict[str, int]:
    classes = dict.fromkeys(("2xx", "429", "5xx", "error", "other"), 0)
    for key, value in counts.items():
        if key == "error" or key == "429":
            name = key
        elif key.startswith("2"):
            name = "2xx"
        elif key.startswith("5"):
            name = "5xx"
        else:
            name = "other"
        classes[name] += value
    return classes


class ProgressPrinter:
    """An `on_progress` that writes `Progress.line()` to a stream (stderr by default).

    On a terminal the line is rewritten in place (`\\r`); otherwise (a log file, CI) one line
    is written every `every` seconds, so the output stays readable.
    """

    def __init__(self, stream: TextIO, *, is_tty: bool | None = None, every: float = 5.0) -> None:
        self._stream = stream
        self._tty = stream.isatty() if is_tty is None else is_tty
        self._every = every
        self._last = float("-inf")
        self._open_line = False
        self._unprinted: Progress | None = None
        self._written = ""  # the last line written in a log (not on a terminal)

    def __call__(self, progress: Progress) -> None:
        """Show `progress` (now on a terminal; else if `every` seconds have passed)."""
        if self._tty:
            # \x1b[K clears what a longer previous line left on the right.
            self._stream.write("\r" + progress.line() + "\x1b[K")
            self._open_line = True
        else:
            now = time.monotonic()
            if now - self._last < self._every:
                self._unprinted = progress
                return
            self._last = now
            self._unprinted = None
            self._written = progress.line()
            self._stream.write(self._written + "\n")
        self._stream.flush()

    def close(self) -> None:
        """Show the last progress if it was held back; end the line that was being rewritten."""
        # A run's final progress is often what the log already shows (the last worker's final
        # snapshot, then the run's own): the same line twice says nothing new.
        if self._unprinted is not None and self._unprinted.line() != self._written:
            self._stream.write(self._unprinted.line() + "\n")
        self._unprinted = None
        if self._open_line:
            self._stream.write("\n")
            self._open_line = False
        # Flushed here, not at the next write: what the caller prints next (on stdout, into the
        # same log) must come after the last progress line, not before it.
        self._stream.flush()
