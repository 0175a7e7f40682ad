"""Store calls retried with backoff behind a circuit breaker."""

from __future__ import annotations

import asyncio
import time

import pytest

from process.store_guard import StoreGuard, StoreUnavailableError
from shared.ports import EventStoreError, PrivacyStoreError


class FlakyStore:
    """Fails every call until `healthy_at` (monotonic seconds), then succeeds."""

    def __init__(self, down_for: float) -> None:
        self.healthy_at = time.monotonic() + down_for
        self.calls = 0
        self.failures = 0

    async def save(self) -> bool:
        self.calls += 1
        if time.monotonic() < self.healthy_at:
            self.failures += 1
            raise EventStoreError("store down")
        return True


def fast_guard(budget: float) -> StoreGuard:
    return StoreGuard(budget_seconds=budget, first_wait=0.01, max_wait=0.05, failure_threshold=3, open_seconds=0.1)


async def test_a_call_that_succeeds_runs_once() -> None:
    store = FlakyStore(down_for=0)
    assert await fast_guard(1).run(store.save) is True
    assert store.calls == 1


async def test_an_outage_shorter_than_the_budget_is_ridden_out() -> None:
    # GIVEN a store down for 0.5 s and a 5 s budget
    store = FlakyStore(down_for=0.5)
    retries: list[BaseException] = []
    guard = fast_guard(5)
    # WHEN a save is attempted
    assert await guard.run(store.save, on_retry=retries.append) is True
    # THEN it succeeded after retries, each reported
    assert store.failures >= 1
    assert retries
    assert guard.circuit_state == "closed"


async def test_the_open_circuit_spares_the_store() -> None:
    # GIVEN a store down for 0.6 s and 20 concurrent callers
    store = FlakyStore(down_for=0.6)
    guard = fast_guard(5)
    results = await asyncio.gather(*(guard.run(store.save) for _ in range(20)))
    assert all(results)
    # THEN with the circuit open most attempts never reached the store: without it, 20
    # callers retrying every <= 50 ms for 0.6 s would make well over 200 calls.
    assert store.calls < 120


async def test_an_outage_longer_than_the_budget_hands_the_message_back() -> None:
    store = FlakyStore(down_for=60)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="stayed unavailable"):
        await fast_guard(0.3).run(store.save)
    assert time.monotonic() - started < 0.35


async def test_a_throttle_hint_is_respected() -> None:
    calls: list[float] = []

    async def throttled_once() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise EventStoreError("429", retry_after=0.08)
        return "ok"

    assert await fast_guard(5).run(throttled_once) == "ok"
    assert calls[1] - calls[0] >= 0.08


async def test_other_errors_are_not_retried() -> None:
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        await fast_guard(5).run(broken)
    assert calls == 1


async def test_a_hung_call_is_cut_off_and_the_run_never_outlives_its_budget() -> None:
    # GIVEN a store call that never answers, and a 0.4 s budget
    calls: list[float] = []

    async def hangs() -> None:
        calls.append(time.monotonic())
        await asyncio.sleep(3600)

    guard = StoreGuard(budget_seconds=0.4, first_wait=0.01, max_wait=0.02, attempt_cap_seconds=0.1)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="did not answer"):
        await guard.run(hangs)
    # THEN each attempt was cut off (several were made) and the run ended with its budget:
    # the batch's lock, which nothing renews, is not outlived
    assert len(calls) >= 3
    assert time.monotonic() - started < 0.4 + 0.05


async def test_the_last_attempt_starts_just_before_the_deadline_even_through_an_open_circuit() -> None:
    # GIVEN a store that is down for most of a 0.4 s budget (its last attempt starts at 0.3 s)
    # and a breaker that opens after one failure and would stay open far longer than that
    store = FlakyStore(down_for=0.28)
    guard = StoreGuard(budget_seconds=0.4, first_wait=0.01, max_wait=0.05, failure_threshold=1, open_seconds=60)
    started = time.monotonic()
    # WHEN a save is attempted
    assert await guard.run(store.save) is True
    # THEN the last attempt probed the store through the open circuit and found it back
    assert 0.29 <= time.monotonic() - started < 0.4
    assert guard.circuit_state == "closed"


async def test_a_store_down_at_the_last_attempt_fails_the_delivery() -> None:
    store = FlakyStore(down_for=60)
    guard = fast_guard(0.4)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="stayed unavailable"):
        await guard.run(store.save)
    elapsed = time.monotonic() - started
    # the last attempt came within its window, and the run ended with the budget
    assert 0.3 <= elapsed < 0.45


async def test_bugs_in_the_call_do_not_open_the_circuit() -> None:
    # GIVEN a call that fails with a bug (not a store error) more often than the threshold
    async def broken() -> None:
        raise ValueError("a bug, not an outage")

    guard = fast_guard(5)
    for _ in range(5):
        with pytest.raises(ValueError, match="a bug"):
            await guard.run(broken)
    # THEN the circuit stayed closed: the next healthy save reaches the store at once
    store = FlakyStore(down_for=0)
    started = time.monotonic()
    assert await guard.run(store.save) is True
    assert store.calls == 1
    assert time.monotonic() - started < 0.05
    assert guard.circuit_state == "closed"


async def test_a_suppression_list_that_cannot_be_read_is_retried_like_a_store_outage() -> None:
    calls = 0

    async def check_then_save() -> bool:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise PrivacyStoreError("privacy store down")
        return True

    retries: list[BaseException] = []
    assert await fast_guard(5).run(check_then_save, on_retry=retries.append) is True
    assert [type(error) for error in retries] == [PrivacyStoreError, PrivacyStoreError]

    async def never() -> bool:
        raise PrivacyStoreError("privacy store down")

    with pytest.raises(StoreUnavailableError, match="suppression list"):
        await fast_guard(0.2).run(never)
