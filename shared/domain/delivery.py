"""How long the event store can be down before a queued event is dead-lettered, and why.

The process stage takes batches (cardinality many). The Service Bus extension does not renew
the locks of a batch, so each invocation has the queue's lock duration to settle its
messages. Within it, a failing store is retried for the retry budget; then the invocation
raises and the host abandons the batch, which counts one delivery. After `maxDeliveryCount`
deliveries the broker dead-letters a message (`MaxDeliveryCountExceeded`).

Two rules follow:

1. The retry budget leaves a fifth of the lock for the rest of the invocation (decoding,
   scoring, the settle call): `retry <= 0.8 x lock`. Otherwise a lock could run out while
   the invocation still retries; the broker would hand the batch to the next receive, and
   every expiry would spend a delivery without a single retry behind it.
2. A delivery of a message fails only if the store failed its first attempt, at the start of
   the store phase, and its last attempt, which starts `last_attempt_seconds` before the
   budget ends (and goes through an open circuit breaker, so it asks the store, not the
   breaker's memory); and two deliveries of one message never overlap (it is locked during
   each, and rule 1 keeps each within its lock). So dead-lettering a message takes
   `maxDeliveryCount` failed deliveries, one after the other, each spanning
   `retry - last_attempt` seconds of outage: an outage shorter than
   `maxDeliveryCount x (retry - last_attempt)` dead-letters nothing. With the defaults
   (10 x (240 - 5) s) that is 39 minutes 10 seconds.
"""

from __future__ import annotations

__all__ = [
    "MAX_LOCK_SECONDS",
    "RETRY_SHARE_OF_LOCK",
    "require_retry_fits_lock",
    "last_attempt_seconds",
    "outage_bound_seconds",
]

RETRY_SHARE_OF_LOCK = 0.8
"""The most of a message lock the store retries may use."""
MAX_LOCK_SECONDS = 300.0
"""Service Bus's longest lock duration (5 minutes)."""
LAST_ATTEMPT_SECONDS = 5.0
"""How long the last store attempt of a delivery may take (a quarter of a budget shorter than 20 s)."""


def last_attempt_seconds(retry_seconds: float) -> float:
    """The time kept for a delivery's last store attempt, at the end of its retry budget."""
    return min(LAST_ATTEMPT_SECONDS, retry_seconds / 4)


def require_retry_fits_lock(retry_seconds: float, lock_seconds: float) -> None:
    """Raise `ValueError` unless `retry_seconds` leaves a fifth of `lock_seconds` unused (rule 1)."""
    if retry_seconds > RETRY_SHARE_OF_LOCK * lock_seconds:
        raise ValueError(
            f"the store retry budget ({retry_seconds:g} s) must be at most {RETRY_SHARE_OF_LOCK:g} of the queue's"
            f" lock duration ({lock_seconds:g} s): batch locks are not renewed, so an invocation must settle"
            " before its lock runs out"
        )


def outage_bound_seconds(retry_seconds: float, max_delivery_count: int) -> float:
    """The longest store outage that dead-letters nothing (rule 2)."""
    return (retry_seconds - last_attempt_seconds(retry_seconds)) * max_delivery_count
