"""Writes to the event store, retried with exponential backoff behind a circuit breaker.

The suppression check that comes before each write (`shared.suppression`) runs inside the
same guarded call: an event must not be stored while the suppression list cannot be read
(fail closed), so a `PrivacyStoreError` is a store failure like an `EventStoreError`, retried
within the same budget and, when it runs out, the batch goes back to the queue.

Why both: the retry keeps a batch alive through a passing outage (a 30 s store restart must
not push good events to the dead-letter queue), and the breaker keeps an instance from
hammering a store that is down: one batch at a time per instance on Azure, but the
invocations of a batch that outlive their instance's breaker state, the reads of
`GET /api/events/...` and a host that restarts all share it. While the circuit is open,
calls fail at once (no request leaves the process) and the caller waits out its backoff;
after `open_seconds` the circuit is half-open: the first success closes it, a failure opens
it again (`process.circuit_breaker`). Only store failures count: a bug in the call is raised
at once and leaves the circuit as it is.

The budget, and its last attempt (`shared.domain.delivery` has the arithmetic)::

    start                                   last_start = deadline - last_attempt   deadline
      |-- attempt, backoff, attempt, ... ----------|---------- last attempt ----------|
          each cut off at min(30 s, last_start)       a probe through an open circuit,
          backoff doubles up to `max_wait`,           cut off at the deadline
          never sleeping past last_start

So an invocation's store phase never outlives its budget (the batch settles inside its lock,
which nothing renews), and a delivery fails only if the store failed both at the start and
at the end of the budget: that is what bounds the outage a message survives.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from process.circuit_breaker import CircuitBreaker, CircuitOpenError, CircuitState
from shared.domain.delivery import last_attempt_seconds
from shared.ports import EventStoreError, PrivacyStoreError

__all__ = ["StoreGuard", "StoreUnavailableError"]

T = TypeVar("T")

CIRCUIT_NAME = "event-store"

logger = logging.getLogger(__name__)

STORE_ERRORS: tuple[type[Exception], ...] = (EventStoreError, PrivacyStoreError)
"""What a guarded call raises when a store it needs failed: retried, and counted by the breaker."""

_RETRIED: tuple[type[Exception], ...] = (*STORE_ERRORS, CircuitOpenError)

ATTEMPT_CAP_SECONDS = 30.0
"""The longest one attempt may take before the last: a hung request must not eat the budget."""


class StoreUnavailableError(Exception):
    """The store stayed unavailable for the whole retry budget; the message goes back to the queue."""


class StoreGuard:
    """Runs store calls with backoff and a shared circuit breaker (one per process)."""

    def __init__(
        self,
        *,
        budget_seconds: float,
        first_wait: float = 0.2,
        max_wait: float = 5.0,
        failure_threshold: int = 5,
        open_seconds: float = 2.0,
        attempt_cap_seconds: float = ATTEMPT_CAP_SECONDS,
    ) -> None:
        self._budget_seconds = budget_seconds
        self._last_attempt_seconds = last_attempt_seconds(budget_seconds)
        self._first_wait = first_wait
        self._max_wait = max_wait
        self._attempt_cap_seconds = attempt_cap_seconds
        # One breaker per guard, and one guard per process: `failure_threshold` store failures
        # in a row open it, it stays open `open_seconds`, then lets calls through half-open.
        self._breaker = CircuitBreaker(
            CIRCUIT_NAME,
            failure_threshold=failure_threshold,
            open_seconds=open_seconds,
            failure_types=STORE_ERRORS,
            on_state_change=_log_circuit_change,
        )

    @property
    def circuit_state(self) -> CircuitState:
        """ "closed", "open" or "half-open" (for logs and tests)."""
        return self._breaker.state

    async def run(
        self, call: Callable[[], Awaitable[T]], *, on_retry: Callable[[BaseException], None] | None = None
    ) -> T:
        """`await call()`, retried on `STORE_ERRORS` until it succeeds or the budget is spent.

        `on_retry` is told each failure that is retried (the caller counts them). Raises
        `StoreUnavailableError` when the last attempt failed too; any other error of `call` at once.
        """
        deadline = time.monotonic() + self._budget_seconds
        last_start = deadline - self._last_attempt_seconds
        failures = 0
        while True:
            now = time.monotonic()
            if now >= last_start:
                try:
                    return await self._breaker.call(functools.partial(self._attempt, call, deadline - now), probe=True)
                except STORE_ERRORS as exc:
                    raise StoreUnavailableError(
                        f"the event store (or the suppression list) stayed unavailable"
                        f" for {self._budget_seconds:g} s: {exc}"
                    ) from exc
            try:
                timeout = min(self._attempt_cap_seconds, last_start - now)
                return await self._breaker.call(functools.partial(self._attempt, call, timeout))
            except _RETRIED as exc:
                failures += 1
                if on_retry is not None:
                    on_retry(exc)
                pause = min(self._pause(failures, exc), max(0.0, last_start - time.monotonic()))
                await asyncio.sleep(pause)

    async def _attempt(self, call: Callable[[], Awaitable[T]], seconds: float) -> T:
        try:
            async with asyncio.timeout(seconds):
                return await call()
        except TimeoutError:
            raise EventStoreError(f"the event store did not answer within {seconds:.1f} s") from None

    def _pause(self, failures: int, error: BaseException) -> float:
        """Exponential backoff with jitter; a throttled store's retry-after is honoured."""
        backoff = min(self._max_wait, self._first_wait * 2.0 ** (failures - 1)) + random.uniform(0, self._first_wait)
        # Cosmos DB says how long to wait when it throttles (429); never retry sooner.
        hint = float(error.retry_after) if isinstance(error, EventStoreError) and error.retry_after else 0.0
        return max(backoff, min(hint, self._max_wait * 2))


def _log_circuit_change(name: str, state: CircuitState) -> None:
    log = logger.info if state == "closed" else logger.warning
    log("circuit %s is now %s", name, state)
