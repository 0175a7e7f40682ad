"""How many Service Bus invocations the local host runs at once.

Two policies, chosen by host.json's `concurrency.dynamicConcurrencyEnabled`:

- off: the queue-depth tiers of the original design, a backpressure rule that slows the
  consumers down when a backlog says the store is not keeping up:

      depth below 1,000        -> 32 concurrent invocations
      1,000 to 10,000          -> 16
      above 10,000             ->  4   (critical mode)

  each capped by `maxConcurrentCalls`. (The original left 1,000-5,000 unspecified; it takes
  the middle tier, erring towards less pressure on a struggling store.)
- on: like the Functions host's dynamic concurrency, start at 1 and adjust from what the
  invocations show: one more while every slot was busy and the last interval had no failed
  invocation, half as many after a failure (additive increase, multiplicative decrease),
  never above `maxConcurrentCalls`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DynamicConcurrency", "tiered_concurrency"]

HEALTHY_BELOW = 1_000
CRITICAL_ABOVE = 10_000


def tiered_concurrency(depth: int, cap: int) -> int:
    """The depth-tier concurrency for `depth` waiting messages, at most `cap`."""
    if depth < HEALTHY_BELOW:
        concurrency = 32
    elif depth <= CRITICAL_ABOVE:
        concurrency = 16
    else:
        concurrency = 4
    return max(1, min(cap, concurrency))


@dataclass(slots=True)
class DynamicConcurrency:
    """AIMD concurrency limit, updated once per interval by `adjust`."""

    cap: int
    limit: int = 1

    def adjust(self, *, saturated: bool, failures: int) -> int:
        """Update and return the limit from the last interval's observations."""
        if failures:
            self.limit = max(1, self.limit // 2)
        elif saturated:
            self.limit = min(self.cap, self.limit + 1)
        return self.limit
