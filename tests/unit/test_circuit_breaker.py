"""The circuit breaker in front of the event store: closed, open, half-open."""

from __future__ import annotations

import asyncio

import pytest

from process.circuit_breaker import CircuitBreaker, CircuitOpenError, CircuitState


class StoreDownError(Exception):
    """What the dependency raises when it is down (the failure type the breaker counts)."""


class ManualClock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Dependency:
    """Answers, or fails with `StoreDownError`, as the test sets it; counts the calls it received."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    async def request(self) -> str:
        self.calls += 1
        if self.down:
            raise StoreDownError("down")
        return "ok"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def changes() -> list[CircuitState]:
    return []


@pytest.fixture
def breaker(clock: ManualClock, changes: list[CircuitState]) -> CircuitBreaker:
    return CircuitBreaker(
        "store",
        failure_threshold=3,
        open_seconds=2.0,
        failure_types=(StoreDownError,),
        on_state_change=lambda _name, state: changes.append(state),
        clock=clock,
    )


def state_of(breaker: CircuitBreaker) -> CircuitState:
    # A call, not the property: mypy would narrow the property after one assert and flag the next.
    return breaker.state


async def fail(breaker: CircuitBreaker, dependency: Dependency, times: int) -> None:
    for _ in range(times):
        with pytest.raises(StoreDownError):
            await breaker.call(dependency.request)


async def test_a_closed_circuit_passes_calls_and_results_through(breaker: CircuitBreaker) -> None:
    dependency = Dependency()
    assert await breaker.call(dependency.request) == "ok"
    assert dependency.calls == 1
    assert state_of(breaker) == "closed"


async def test_failures_in_a_row_open_the_circuit_and_calls_then_fail_fast(
    breaker: CircuitBreaker, changes: list[CircuitState]
) -> None:
    # GIVEN a dependency that is down
    dependency = Dependency()
    dependency.down = True
    # WHEN it fails as many times in a row as the threshold
    await fail(breaker, dependency, 3)
    # THEN the circuit is open, and the next call is refused without reaching the dependency
    assert state_of(breaker) == "open"
    with pytest.raises(CircuitOpenError, match=r"circuit store is open for another 2\.00 s"):
        await breaker.call(dependency.request)
    assert dependency.calls == 3
    assert changes == ["open"]


async def test_a_success_resets_the_count_of_failures(breaker: CircuitBreaker) -> None:
    dependency = Dependency()
    dependency.down = True
    await fail(breaker, dependency, 2)
    dependency.down = False
    await breaker.call(dependency.request)
    dependency.down = True
    await fail(breaker, dependency, 2)
    # Four failures, but never three in a row.
    assert state_of(breaker) == "closed"


async def test_after_the_open_period_a_success_closes_the_circuit(
    breaker: CircuitBreaker, clock: ManualClock, changes: list[CircuitState]
) -> None:
    dependency = Dependency()
    dependency.down = True
    await fail(breaker, dependency, 3)
    # Still open just before the period ends...
    clock.now += 1.99
    with pytest.raises(CircuitOpenError):
        await breaker.call(dependency.request)
    # ...half-open once it has passed: the next call goes through, and its success closes it.
    clock.now += 0.01
    assert state_of(breaker) == "half-open"
    dependency.down = False
    assert await breaker.call(dependency.request) == "ok"
    assert state_of(breaker) == "closed"
    assert changes == ["open", "half-open", "closed"]


async def test_a_failure_while_half_open_opens_the_circuit_for_another_period(
    breaker: CircuitBreaker, clock: ManualClock, changes: list[CircuitState]
) -> None:
    dependency = Dependency()
    dependency.down = True
    await fail(breaker, dependency, 3)
    clock.now += 2.0
    # One failure is enough while half-open, the threshold does not apply
    await fail(breaker, dependency, 1)
    assert state_of(breaker) == "open"
    clock.now += 1.5
    with pytest.raises(CircuitOpenError):
        await breaker.call(dependency.request)
    assert changes == ["open", "half-open", "open"]


async def test_other_errors_neither_open_nor_close_the_circuit(breaker: CircuitBreaker, clock: ManualClock) -> None:
    # GIVEN a call with a bug in it, failing more often than the threshold
    async def bug() -> None:
        raise ValueError("a bug")

    for _ in range(5):
        with pytest.raises(ValueError, match="a bug"):
            await breaker.call(bug)
    # THEN the circuit stays closed: the dependency is not at fault
    assert state_of(breaker) == "closed"
    # AND while half-open, a bug does not close the circuit either
    dependency = Dependency()
    dependency.down = True
    await fail(breaker, dependency, 3)
    clock.now += 2.0
    with pytest.raises(ValueError, match="a bug"):
        await breaker.call(bug)
    assert state_of(breaker) == "half-open"


async def test_a_cancelled_call_is_not_a_failure(breaker: CircuitBreaker) -> None:
    dependency = Dependency()
    dependency.down = True
    await fail(breaker, dependency, 2)
    # A third call is cancelled while it waits: that is not the third failure in a row
    started = asyncio.Event()

    async def hangs() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(breaker.call(hangs))
    await asyncio.wait_for(started.wait(), 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert state_of(breaker) == "closed"


async def test_a_call_that_started_before_the_circuit_opened_does_not_change_it(
    breaker: CircuitBreaker, clock: ManualClock
) -> None:
    # GIVEN a slow call that started while the circuit was closed
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow() -> str:
        entered.set()
        await release.wait()
        return "late"

    slow_call = asyncio.create_task(breaker.call(slow))
    await asyncio.wait_for(entered.wait(), 1)
    # WHEN the circuit opens, then goes half-open, while it runs
    dependency = Dependency()
    dependency.down = True
    await fail(breaker, dependency, 3)
    clock.now += 2.0
    await fail(breaker, dependency, 1)
    # AND the slow call succeeds after that
    release.set()
    assert await asyncio.wait_for(slow_call, 1) == "late"
    # THEN its success, from before the outage was seen, does not close the circuit
    assert state_of(breaker) == "open"


@pytest.mark.parametrize(("threshold", "seconds"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_a_breaker_that_could_never_work_is_refused(threshold: int, seconds: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        CircuitBreaker("store", failure_threshold=threshold, open_seconds=seconds, failure_types=(StoreDownError,))


async def test_a_probe_goes_through_an_open_circuit_and_its_outcome_decides(
    breaker: CircuitBreaker, changes: list[CircuitState]
) -> None:
    # GIVEN an open circuit, well within its open period
    dependency = Dependency()
    dependency.down = True
    await fail(breaker, dependency, 3)
    assert state_of(breaker) == "open"
    with pytest.raises(CircuitOpenError):
        await breaker.call(dependency.request)
    # WHEN a probe fails, the circuit stays open; WHEN one succeeds, it closes
    with pytest.raises(StoreDownError):
        await breaker.call(dependency.request, probe=True)
    assert state_of(breaker) == "open"
    dependency.down = False
    assert await breaker.call(dependency.request, probe=True) == "ok"
    assert state_of(breaker) == "closed"
    assert dependency.calls == 5
    assert changes == ["open", "half-open", "open", "half-open", "closed"]
