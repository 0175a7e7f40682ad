"""Writes to the event store, retried with exponential backoff behind a circuit breaker.

Why both: the retry keeps one message alive through a passing outage (a 30 s store restart
must not push good events to the dead-letter queue), and the breaker keeps dozens of
concurrent invocations from hammering a store that is down. While the circuit is open,
calls fail at once (no request leaves the process) and each invocation waits out its own
backoff; after `open_seconds` the circuit is half-open: the calls that arrive then go
through (no single probe; the jittered backoff spreads them), the first success closes it for
everyone and a failure opens it again (`process.circuit_breaker`). Only store failures count:
a bug in the call is raised at once and leaves the circuit as it is.

Timeline of a 30 s outage, one message::

    t=0    save -> EventStoreError         (failure 1 of `failure_threshold`)
    t=0.5  save -> EventStoreError ... circuit opens after the threshold
    t=..   attempts fail fast with the circuit open; backoff doubles up to `max_wait`
    t=30   the store is back; the next probe succeeds, the circuit closes, the backlog drains

An invocation gives up after `budget_seconds` and raises `StoreUnavailableError`: the host
hands the message back to the queue (one delivery counted) rather than holding its lock
forever. The budget sits below the function timeout and the lock-renewal limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_before_delay, wait_exponential_jitter

from process.circuit_breaker import CircuitBreaker, CircuitOpenError, CircuitState
from shared.ports import EventStoreError

__all__ = ["StoreGuard", "StoreUnavailableError"]

T = TypeVar("T")

CIRCUIT_NAME = "event-store"

logger = logging.getLogger(__name__)

MIN_ATTEMPT_SECONDS = 5.0


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
        min_attempt_seconds: float = MIN_ATTEMPT_SECONDS,
        on_retry: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._budget_seconds = budget_seconds
        self._backoff = wait_exponential_jitter(multiplier=first_wait, max=max_wait, jitter=first_wait)
        self._max_wait = max_wait
        # One breaker per guard, and one guard per process: `failure_threshold` store failures
        # in a row open it, it stays open `open_seconds`, then lets calls through half-open.
        self._breaker = CircuitBreaker(
            CIRCUIT_NAME,
            failure_threshold=failure_threshold,
            open_seconds=open_seconds,
            failure_types=(EventStoreError,),
            on_state_change=_log_circuit_change,
        )
        self._on_retry = on_retry
        self._min_attempt_seconds = min_attempt_seconds

    @property
    def circuit_state(self) -> CircuitState:
        """ "closed", "open" or "half-open" (for logs and tests)."""
        return self._breaker.state

    async def run(self, call: Callable[[], Awaitable[T]]) -> T:
        """`await call()`, retried on `EventStoreError` until it succeeds or the budget is spent."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((EventStoreError, CircuitOpenError)),
            wait=self._wait,
            stop=stop_before_delay(self._budget_seconds),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        deadline = time.monotonic() + self._budget_seconds
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._breaker.call(lambda: self._attempt(call, deadline))
        except (EventStoreError, CircuitOpenError) as exc:
            raise StoreUnavailableError(
                f"the event store stayed unavailable for {self._budget_seconds:g} s: {exc}"
            ) from exc
        raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover

    async def _attempt(self, call: Callable[[], Awaitable[T]], deadline: float) -> T:
        # A hung request must not outlive the budget (and with it the function timeout): each
        # attempt gets what is left of the budget, at least `min_attempt_seconds`.
        seconds = max(self._min_attempt_seconds, deadline - time.monotonic())
        try:
            async with asyncio.timeout(seconds):
                return await call()
        except TimeoutError:
            raise EventStoreError(f"the event store did not answer within {seconds:.1f} s") from None

    def _wait(self, state: RetryCallState) -> float:
        backoff = self._backoff(state)
        # Cosmos DB says how long to wait when it throttles (429); never retry sooner.
        error = state.outcome.exception() if state.outcome is not None else None
        hint = error.retry_after if isinstance(error, EventStoreError) and error.retry_after else 0.0
        return max(backoff, min(hint, self._max_wait * 2))

    def _before_sleep(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if self._on_retry is not None and error is not None:
            self._on_retry(error)


def _log_circuit_change(name: str, state: CircuitState) -> None:
    log = logger.info if state == "closed" else logger.warning
    log("circuit %s is now %s", name, state)
