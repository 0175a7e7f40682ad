"""A circuit breaker for one dependency, shared by the coroutines of one event loop.

States (the classic three):

- **closed**: calls go through; `failure_threshold` failures in a row open the circuit, and
  any success resets the count.
- **open**: calls fail at once with `CircuitOpenError`, nothing reaches the dependency, for
  `open_seconds`.
- **half-open**: once the open period has passed, the calls that arrive go through (there is
  no single probe: callers back off with jitter, which spreads them); the first success closes
  the circuit, a failure opens it for another full period.

Only exceptions of the given `failure_types` count as failures: a bug in the caller, or a
cancellation, says nothing about the dependency's health and leaves the state as it is. A call
that was already running when the circuit opened cannot change it either: its outcome belongs
to the time before the circuit opened.

Not thread-safe, and it needs no lock: one event loop runs the coroutines that share it, and
no state change spans an `await`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

__all__ = ["CircuitBreaker", "CircuitOpenError", "CircuitState"]

CircuitState = Literal["closed", "open", "half-open"]

T = TypeVar("T")


class CircuitOpenError(Exception):
    """The circuit is open: the call was refused without reaching the dependency."""

    def __init__(self, name: str, remaining_seconds: float) -> None:
        super().__init__(f"circuit {name} is open for another {remaining_seconds:.2f} s")
        self.remaining_seconds = remaining_seconds


class CircuitBreaker:
    """Counts consecutive failures of one dependency and refuses calls while it looks down.

    Every call to the dependency goes through `call`.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        open_seconds: float,
        failure_types: tuple[type[BaseException], ...],
        on_state_change: Callable[[str, CircuitState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, not {failure_threshold}")
        if open_seconds <= 0:
            raise ValueError(f"open_seconds must be positive, not {open_seconds}")
        self.name = name
        self._failure_threshold = failure_threshold
        self._open_seconds = open_seconds
        self._failure_types = failure_types
        self._on_state_change = on_state_change
        # Monotonic by default: a wall-clock step (NTP) must not shorten or stretch the open period.
        self._clock = clock
        self._state: CircuitState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        # Bumped each time the circuit opens, so an outcome from before the opening is ignored.
        self._generation = 0

    @property
    def state(self) -> CircuitState:
        """The state as of now; an open circuit whose period has passed reads as half-open."""
        if self._state == "open" and self._clock() - self._opened_at >= self._open_seconds:
            return "half-open"
        return self._state

    async def call(self, function: Callable[[], Awaitable[T]], *, probe: bool = False) -> T:
        """`await function()` unless the circuit is open, and record how it went.

        Raises `CircuitOpenError`, without calling, while the circuit is open; otherwise
        returns or raises what the call does. A `probe` goes through an open circuit as a
        half-open trial (its success closes the circuit, its failure opens it afresh): for a
        caller's last attempt, which must learn whether the dependency is back now, not
        whether it was down a moment ago.
        """
        generation = self._admit(probe)
        try:
            result = await function()
        except BaseException as exc:
            self._record(generation, exc)
            raise
        self._record(generation, None)
        return result

    def _admit(self, probe: bool) -> int:
        if self._state == "open":
            remaining = self._opened_at + self._open_seconds - self._clock()
            if remaining > 0 and not probe:
                raise CircuitOpenError(self.name, remaining)
            self._set_state("half-open")
        return self._generation

    def _record(self, generation: int, error: BaseException | None) -> None:
        if generation != self._generation:
            return  # the circuit opened while this call ran: its outcome is from before
        if error is None:
            self._record_success()
        elif isinstance(error, self._failure_types):
            self._record_failure()

    def _record_success(self) -> None:
        self._failures = 0
        if self._state != "closed":
            self._set_state("closed")

    def _record_failure(self) -> None:
        self._failures += 1
        if self._state == "half-open" or self._failures >= self._failure_threshold:
            self._failures = 0
            self._opened_at = self._clock()
            self._generation += 1
            self._set_state("open")

    def _set_state(self, state: CircuitState) -> None:
        self._state = state
        if self._on_state_change is not None:
            self._on_state_change(self.name, state)
