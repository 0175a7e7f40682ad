"""The open-loop schedule: when each request is due, and which worker sends it.

Request i (0-based, over the whole run) is due at `start + i / rate`, whatever happened to
the requests before it. A run of `duration` seconds schedules every i with i / rate below
the duration, so `ceil(duration * rate)` requests in all.

With several workers, worker k sends the requests i = k, k + n, k + 2n, ... (n workers):
each worker runs at rate / n, and together they interleave into the same evenly spaced
stream one worker would make, rather than n bursts at the same instants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Schedule"]


@dataclass(frozen=True)
class Schedule:
    """The due times of a constant-arrival-rate run, split across `workers` interleaved senders."""

    rate: float
    """Requests per second, all workers together."""
    duration: float
    """Seconds during which requests are due."""
    workers: int = 1

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"the rate must be a positive number, not {self.rate}")
        if not (self.duration > 0 and math.isfinite(self.duration)):
            raise ValueError(f"the duration must be a positive number of seconds, not {self.duration}")
        if self.workers < 1:
            raise ValueError(f"there must be at least one worker, not {self.workers}")

    @property
    def total(self) -> int:
        """How many requests the whole run schedules: every i with i / rate < duration."""
        # Round away float noise first: 3 s at 100/s must be 300 requests, not 301 because
        # 3 * 100.00000000000001 is a hair over 300.
        product = round(self.duration * self.rate, 9)
        return max(1, math.ceil(product))

    @property
    def interval(self) -> float:
        """Seconds between one worker's consecutive requests."""
        return self.workers / self.rate

    def count_for(self, worker: int) -> int:
        """How many requests worker `worker` sends: the i < total with i % workers == worker."""
        self._check_worker(worker)
        total = self.total
        return 0 if worker >= total else (total - worker + self.workers - 1) // self.workers

    def global_index(self, worker: int, j: int) -> int:
        """The run-wide index of worker `worker`'s j-th request."""
        return worker + j * self.workers

    def due(self, index: int) -> float:
        """Seconds after the start at which the run-wide request `index` is due."""
        # Computed from the index, never by adding intervals up, so rounding cannot drift.
        return index / self.rate

    def _check_worker(self, worker: int) -> None:
        if not 0 <= worker < self.workers:
            raise ValueError(f"worker {worker} is not in 0..{self.workers - 1}")
