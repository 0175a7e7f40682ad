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
  invocations show: while every slot was busy and nothing failed, double (slow start) up
  to a threshold and then add one; after a failure, halve and lower the threshold there;
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
    """Slow start, then AIMD: the concurrency limit, updated once per interval by `adjust`.

    While every slot stays busy and nothing fails, the limit doubles (up to `threshold`, the
    cap at first) and then grows by one; a failed invocation halves it and sets the
    threshold there, so the next climb past it is careful. A burst reaches 32 in five
    intervals instead of thirty-one.
    """

    cap: int
    limit: int = 1
    threshold: int = 0

    def __post_init__(self) -> None:
        if self.threshold <= 0:
            self.threshold = self.cap

    def adjust(self, *, saturated: bool, failures: int) -> int:
        """Update and return the limit from the last interval's observations."""
        if failures:
            self.limit = max(1, self.limit // 2)
            self.threshold = self.limit
        elif saturated:
            grown = self.limit * 2 if self.limit < self.threshold else self.limit + 1
            self.limit = min(self.cap, grown)
        return self.limit
