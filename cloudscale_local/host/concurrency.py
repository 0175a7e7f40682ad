"""How many single-dispatch Service Bus invocations the local host runs at once.

Only functions with cardinality one have a concurrency to choose: the Service Bus extension
runs a function with cardinality many one batch at a time per instance ("The batch receive
loop below only executes functions at a concurrency level of 1", `ServiceBusListener.cs` in
Microsoft.Azure.WebJobs.Extensions.ServiceBus), whatever host.json says.

For single dispatch, host.json chooses between:

- static: `extensions.serviceBus.maxConcurrentCalls` invocations at once;
- dynamic (`concurrency.dynamicConcurrencyEnabled`): `maxConcurrentCalls` is ignored and the
  host's `ConcurrencyManager` / `ConcurrencyStatus` (azure-webjobs-sdk,
  `src/Microsoft.Azure.WebJobs.Host/Scale/`) sets the level. `HostConcurrency` below follows
  their arithmetic:

  - start at 1;
  - adjust at most once per `min(5 s, 2 s + mean invocation latency)`;
  - increase only when every slot was in use since the last adjustment, the host has been
    unthrottled for at least 5 consecutive throttle checks, no decrease happened in the last
    `min(30 s, 10 s + 10 x mean latency)`, and the level is below `maximumFunctionConcurrency`;
  - decrease after at least 3 consecutive throttled checks, never below 1;
  - each step is 1 plus the number of earlier steps in the same direction within 10 s,
    at most 6.

  The throttle the local host measures is the host's CPU throttle: this process's CPU use,
  as a share of every core, at or above `concurrency.cpuThreshold` (default 0.80).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

__all__ = ["CpuThrottle", "HostConcurrency"]

MIN_CONSECUTIVE_INCREASE = 5
MIN_CONSECUTIVE_DECREASE = 3
ADJUSTMENT_RUN_WINDOW_SECONDS = 10.0
MAX_ADJUSTMENT_DELTA = 5
SAMPLE_INTERVAL_SECONDS = 1.0
DEFAULT_MIN_ADJUSTMENT_SECONDS = 5.0
DEFAULT_DECREASE_QUIET_SECONDS = 30.0


@dataclass(slots=True)
class CpuThrottle:
    """The host's CPU throttle: on while this process uses `threshold` or more of the machine's CPU."""

    threshold: float = 0.80
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    _last_wall: float = field(default_factory=time.monotonic)
    _last_cpu: float = field(default_factory=time.process_time)
    _state: bool | None = None
    consecutive: int = 0
    """Checks in a row that found the current state."""

    def check(self) -> bool | None:
        """Sample once per interval; True throttled, False healthy, None not sampled yet."""
        now, cpu = time.monotonic(), time.process_time()
        elapsed = now - self._last_wall
        if elapsed < SAMPLE_INTERVAL_SECONDS:
            return self._state
        usage = (cpu - self._last_cpu) / elapsed / self.cores
        self._last_wall, self._last_cpu = now, cpu
        self.record(usage >= self.threshold)
        return self._state

    def record(self, throttled: bool) -> None:
        """Count one throttle check's result."""
        self.consecutive = self.consecutive + 1 if throttled == self._state else 1
        self._state = throttled


@dataclass(slots=True)
class HostConcurrency:
    """One function's dynamic concurrency level, adjusted as the host's `ConcurrencyStatus` is."""

    maximum: int = 500
    current: int = 1
    outstanding: int = 0
    _max_outstanding: int = 0
    _invocations: int = 0
    _latency_total: float = 0.0
    _last_adjustment: float = field(default_factory=time.monotonic)
    _last_decrease: float | None = None
    _run_direction: int = 0
    _run_count: int = 0

    @property
    def available(self) -> int:
        """How many new invocations may start now."""
        return max(0, self.current - self.outstanding)

    def started(self) -> None:
        """An invocation started."""
        self.outstanding += 1
        self._max_outstanding = max(self._max_outstanding, self.outstanding)

    def completed(self, latency_seconds: float) -> None:
        """An invocation ended, after `latency_seconds`."""
        self.outstanding = max(0, self.outstanding - 1)
        self._invocations += 1
        self._latency_total += latency_seconds

    def update(self, throttled: bool | None, consecutive: int, now: float | None = None) -> int:
        """Adjust from the throttle state (seen `consecutive` times in a row); return the level."""
        now = time.monotonic() if now is None else now
        if throttled is None or now - self._last_adjustment <= self._interval(2.0, DEFAULT_MIN_ADJUSTMENT_SECONDS, 1):
            return self.current
        if not throttled:
            if consecutive >= MIN_CONSECUTIVE_INCREASE and self._may_increase(now):
                self._adjust(+1, now)
        elif consecutive >= MIN_CONSECUTIVE_DECREASE and self.current > 1:
            self._adjust(-1, now)
        return self.current

    def _may_increase(self, now: float) -> bool:
        quiet = self._interval(10.0, DEFAULT_DECREASE_QUIET_SECONDS, 10)
        if self._last_decrease is not None and now - self._last_decrease < quiet:
            return False
        # Only while the current level is fully used: a trickle never raises it.
        return self._max_outstanding >= self.current and self.current < self.maximum

    def _interval(self, minimum: float, default: float, latency_multiplier: int) -> float:
        if self._invocations == 0:
            return default
        mean_latency = self._latency_total / self._invocations
        return min(minimum + latency_multiplier * mean_latency, default)

    def _adjust(self, direction: int, now: float) -> None:
        if self._run_direction not in (0, direction) or now - self._last_adjustment > ADJUSTMENT_RUN_WINDOW_SECONDS:
            run = self._run_count = 0
        else:
            run = self._run_count
            self._run_count += 1
        self._run_direction = direction
        delta = direction * (1 + min(MAX_ADJUSTMENT_DELTA, run))
        if direction < 0:
            self._last_decrease = now
        self._last_adjustment = now
        self.current = min(self.maximum, max(1, self.current + delta))
        self._max_outstanding = 0
        self._invocations = 0
        self._latency_total = 0.0
