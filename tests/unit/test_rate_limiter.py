"""`ingest.rate_limiter.RateLimiter`: the per-IP bucket and the shared global window.

The store is an in-memory fake of `shared.ports.RateLimitStore` whose state can be read
back (per-client `ClientState`, per-instance `PeerWindow`); time is a fake clock. The
background exchange is an asyncio task: `settle()` lets it run (no real time passes).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

import pytest

from ingest.rate_limiter import RateLimitDecision, RateLimiter
from shared.domain.ratelimit import BucketLimits, ClientState, PeerWindow, SlotWindow
from shared.ports import PortError, RateLimitStoreError
from tests.waiting import wait_until

T = TypeVar("T")

T0 = 1_000_000.0
IP_A = "203.0.113.7"
IP_B = "198.51.100.9"


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeRateLimitStore:
    """An in-memory `RateLimitStore`. Set `update_error` / `exchange_error` to make calls fail."""

    def __init__(self, *, replay_changes: bool = False) -> None:
        self.clients: dict[str, ClientState] = {}
        self.windows: dict[str, PeerWindow] = {}
        self.update_error: Exception | None = None
        self.exchange_error: Exception | None = None
        self.exchange_calls = 0
        self.replay_changes = replay_changes
        """Run every `change` twice, as an optimistic-concurrency retry would."""

    async def update_client(self, client_key: str, change: Callable[[ClientState | None], tuple[ClientState, T]]) -> T:
        if self.update_error is not None:
            raise self.update_error
        if self.replay_changes:
            change(self.clients.get(client_key))  # a losing attempt: its result is thrown away
        state, result = change(self.clients.get(client_key))
        self.clients[client_key] = state
        return result

    async def exchange_window(
        self,
        instance_id: str,
        window: SlotWindow,
        now: float,
        reserve: Callable[[Sequence[PeerWindow]], int],
    ) -> Sequence[PeerWindow]:
        self.exchange_calls += 1
        if self.exchange_error is not None:
            raise self.exchange_error
        peers = list(self.windows.values())
        self.windows[instance_id] = PeerWindow(instance_id, window, now, reserve(peers))
        return peers

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def settle() -> None:
    """Let background exchange tasks run to completion (the fake store never really waits)."""
    for _ in range(5):
        await asyncio.sleep(0)


MakeLimiter = Callable[..., RateLimiter]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> FakeRateLimitStore:
    return FakeRateLimitStore()


@pytest.fixture
async def make_limiter(clock: FakeClock, store: FakeRateLimitStore) -> AsyncIterator[MakeLimiter]:
    made: list[RateLimiter] = []

    def make(
        *,
        ip_capacity: int = 100,
        ip_refill: float = 10.0,
        global_per_minute: int = 1_000_000,
        instance_id: str | None = None,
        on: FakeRateLimitStore | None = None,
    ) -> RateLimiter:
        limiter = RateLimiter(
            on or store,
            ip_limits=BucketLimits(ip_capacity, ip_refill),
            global_per_minute=global_per_minute,
            sync_seconds=1.0,
            clock=clock,
            instance_id=instance_id,
        )
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.close()


async def admit_many(limiter: RateLimiter, count: int, ip: str = IP_A) -> list[RateLimitDecision]:
    return [await limiter.admit(ip) for _ in range(count)]


async def drain(limiter: RateLimiter, ip: str = IP_A) -> int:
    """Send requests until one is refused; return how many were admitted."""
    admitted = 0
    while (decision := await limiter.admit(ip)).allowed:
        admitted += 1
    assert decision.refused_by == "global"
    return admitted


# --- Per-IP token bucket ----------------------------------------------------------------------


async def test_the_101st_request_from_one_ip_is_refused_by_the_ip_limit(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(ip_capacity=100, ip_refill=10.0)

    decisions = await admit_many(limiter, 101)

    assert all(d.allowed and d.refused_by is None for d in decisions[:100])
    refused = decisions[100]
    assert refused.allowed is False
    assert refused.refused_by == "ip"
    assert refused.retry_after_seconds >= 1


async def test_ip_decisions_carry_the_rate_limit_header_numbers(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(ip_capacity=100, ip_refill=10.0)

    decisions = await admit_many(limiter, 101)

    first, last_admitted, refused = decisions[0], decisions[99], decisions[100]
    assert first == RateLimitDecision(
        allowed=True,
        refused_by=None,
        limit=100,
        remaining=99,
        reset_seconds=1,  # one token to refill at 10 per second, rounded up
        retry_after_seconds=0,
        requests_last_minute=1,
        policy='100;w=10;comment="events per client"',
    )
    assert (last_admitted.remaining, last_admitted.reset_seconds) == (0, 10)
    assert refused == RateLimitDecision(
        allowed=False,
        refused_by="ip",
        limit=100,
        remaining=0,
        reset_seconds=10,
        retry_after_seconds=1,  # 0.1 s to the next token, never less than 1 s in the header
        requests_last_minute=101,
        policy='100;w=10;comment="events per client"',
    )


async def test_retry_after_is_rounded_up_to_whole_seconds(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(ip_capacity=1, ip_refill=0.4)  # one token every 2.5 s

    _, refused = await admit_many(limiter, 2)

    assert refused.retry_after_seconds == 3
    assert refused.reset_seconds == 3


async def test_the_bucket_refills_with_time(make_limiter: MakeLimiter, clock: FakeClock) -> None:
    limiter = make_limiter(ip_capacity=100, ip_refill=10.0)
    await admit_many(limiter, 101)

    clock.advance(0.5)
    decisions = await admit_many(limiter, 6)

    assert [d.allowed for d in decisions] == [True] * 5 + [False]


async def test_different_ips_do_not_share_a_bucket(make_limiter: MakeLimiter, store: FakeRateLimitStore) -> None:
    limiter = make_limiter(ip_capacity=100)
    await admit_many(limiter, 101, IP_A)

    other = await limiter.admit(IP_B)

    assert other.allowed is True
    assert other.remaining == 99
    assert other.requests_last_minute == 1
    assert set(store.clients) == {IP_A, IP_B}


async def test_the_client_state_lives_in_the_store(make_limiter: MakeLimiter, store: FakeRateLimitStore) -> None:
    limiter = make_limiter(ip_capacity=100)

    await admit_many(limiter, 3)

    state = store.clients[IP_A]
    assert state.bucket.tokens == 97
    assert state.recent.total(T0) == 3


async def test_two_instances_share_one_ip_bucket_through_the_store(make_limiter: MakeLimiter) -> None:
    a = make_limiter(ip_capacity=100, instance_id="a")
    b = make_limiter(ip_capacity=100, instance_id="b")

    await admit_many(a, 60)
    decisions = await admit_many(b, 41)

    assert [d.allowed for d in decisions].count(True) == 40
    assert decisions[-1].refused_by == "ip"
    assert decisions[-1].requests_last_minute == 101


async def test_a_store_retrying_the_change_does_not_double_count(make_limiter: MakeLimiter) -> None:
    replaying = FakeRateLimitStore(replay_changes=True)
    limiter = make_limiter(ip_capacity=100, on=replaying)

    decisions = await admit_many(limiter, 101)

    assert [d.allowed for d in decisions].count(True) == 100
    assert decisions[-1].requests_last_minute == 101


# --- Global window ----------------------------------------------------------------------------


async def test_the_51st_request_is_refused_by_a_global_limit_of_50(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(ip_capacity=1_000_000, global_per_minute=50)

    decisions = [await limiter.admit(f"10.0.0.{n}") for n in range(51)]

    assert all(d.allowed for d in decisions[:50])
    assert decisions[50] == RateLimitDecision(
        allowed=False,
        refused_by="global",
        limit=50,
        remaining=0,
        reset_seconds=1,  # the window was empty at the last exchange: wait for the next one
        retry_after_seconds=1,
        requests_last_minute=0,
        policy='50;w=60;comment="requests, whole service"',
    )


async def test_a_global_refusal_does_not_touch_the_clients_bucket(
    make_limiter: MakeLimiter, store: FakeRateLimitStore
) -> None:
    limiter = make_limiter(global_per_minute=1)
    await limiter.admit(IP_A)

    refused = await limiter.admit(IP_B)

    assert refused.refused_by == "global"
    assert IP_B not in store.clients


async def test_once_the_full_window_is_known_retry_after_says_when_it_frees(
    make_limiter: MakeLimiter, clock: FakeClock
) -> None:
    # GIVEN the global limit used up at T0
    limiter = make_limiter(ip_capacity=1_000_000, global_per_minute=50)
    await admit_many(limiter, 50)

    # WHEN ten seconds later the instance has exchanged counts again
    clock.advance(10)
    await limiter.admit(IP_A)
    await settle()
    refused = await limiter.admit(IP_A)

    # THEN the refusal says the window frees when second T0 leaves it, 50 s later
    assert refused.refused_by == "global"
    assert refused.retry_after_seconds == 50
    assert refused.reset_seconds == 50


async def test_the_global_window_slides(make_limiter: MakeLimiter, clock: FakeClock) -> None:
    limiter = make_limiter(ip_capacity=1_000_000, global_per_minute=50)
    await admit_many(limiter, 50)

    clock.advance(60)
    await limiter.admit(IP_A)  # decided on the old quota; starts the exchange
    await settle()
    decisions = await admit_many(limiter, 51)

    assert [d.allowed for d in decisions].count(True) == 50


async def test_counts_are_exchanged_in_the_background_at_most_once_per_interval(
    make_limiter: MakeLimiter, store: FakeRateLimitStore, clock: FakeClock
) -> None:
    limiter = make_limiter()
    await admit_many(limiter, 5)
    assert store.exchange_calls == 1  # the first request waits for the first exchange

    clock.advance(0.5)
    await admit_many(limiter, 5)
    await settle()
    assert store.exchange_calls == 1

    clock.advance(0.5)
    await limiter.admit(IP_A)  # decided on the current quota, then the exchange runs
    await settle()
    assert store.exchange_calls == 2
    record = store.windows[limiter.instance_id]
    assert (record.window, record.exchanged_at) == (SlotWindow(((int(T0), 10), (int(T0) + 1, 1))), T0 + 1)


async def test_a_request_refused_by_its_ip_gives_back_its_global_slot(make_limiter: MakeLimiter) -> None:
    # GIVEN a global limit of 3 and an IP that may make one request
    limiter = make_limiter(ip_capacity=1, ip_refill=0.001, global_per_minute=3)
    assert (await limiter.admit(IP_A)).allowed

    # WHEN that IP keeps trying
    refusals = await admit_many(limiter, 10, IP_A)

    # THEN its refusals used none of the global window: two more clients get in
    assert {d.refused_by for d in refusals} == {"ip"}
    assert (await limiter.admit("10.0.0.1")).allowed
    assert (await limiter.admit("10.0.0.2")).allowed
    assert (await limiter.admit("10.0.0.3")).refused_by == "global"


async def test_given_back_slots_are_not_reported_to_the_other_instances(
    make_limiter: MakeLimiter, store: FakeRateLimitStore, clock: FakeClock
) -> None:
    limiter = make_limiter(ip_capacity=1, ip_refill=0.001)
    await admit_many(limiter, 10)  # 1 admitted, 9 refused by the IP limit

    clock.advance(1)
    await limiter.admit(IP_B)
    await settle()

    assert store.windows[limiter.instance_id].window.total(clock.now) == 2


# --- Several instances on one store ------------------------------------------------------------

LIMIT = 100


async def run_instances(instances: Sequence[RateLimiter], clock: FakeClock, seconds: int) -> Counter[float]:
    """Every second, each instance in turn admits all it can; returns admissions by time."""
    admitted: Counter[float] = Counter()
    for _ in range(seconds):
        for instance in instances:
            admitted[clock.now] += await drain(instance, ip=instance.instance_id)
            await settle()
        clock.advance(1)
    return admitted


def most_in_any_minute(admitted: Counter[float], start: float, end: float) -> int:
    return max(
        sum(count for at, count in admitted.items() if second <= at < second + 60)
        for second in range(int(start), int(end))
    )


async def test_one_instance_never_admits_more_than_the_limit_in_any_minute(
    make_limiter: MakeLimiter, clock: FakeClock
) -> None:
    limiter = make_limiter(ip_capacity=1_000_000, global_per_minute=LIMIT, instance_id="solo")

    admitted = await run_instances([limiter], clock, seconds=150)

    assert most_in_any_minute(admitted, T0, T0 + 90) == LIMIT


async def test_two_instances_joining_together_overshoot_by_at_most_the_newcomers_share(
    make_limiter: MakeLimiter, clock: FakeClock
) -> None:
    # share_quota's bound: an instance that joined since another's last exchange was not
    # counted by it, so the window overshoots by at most one share (limit // 2 for the
    # second of two instances) per newly joined instance per sync interval.
    a = make_limiter(ip_capacity=1_000_000, global_per_minute=LIMIT, instance_id="a")
    b = make_limiter(ip_capacity=1_000_000, global_per_minute=LIMIT, instance_id="b")

    admitted = await run_instances([a, b], clock, seconds=60)

    assert sum(admitted.values()) <= LIMIT + LIMIT // 2


async def test_two_established_instances_never_admit_more_than_the_limit_in_a_minute(
    make_limiter: MakeLimiter, clock: FakeClock
) -> None:
    # GIVEN two instances that have exchanged every second since T0 (no one joins after T0)
    a = make_limiter(ip_capacity=1_000_000, global_per_minute=LIMIT, instance_id="a")
    b = make_limiter(ip_capacity=1_000_000, global_per_minute=LIMIT, instance_id="b")

    # WHEN both admit all they can, every second, for two minutes
    admitted = await run_instances([a, b], clock, seconds=120)

    # THEN the second minute, with no newcomer, holds at most the limit
    assert sum(count for at, count in admitted.items() if at >= T0 + 60) <= LIMIT


async def test_an_instance_that_went_quiet_stops_holding_a_share(
    make_limiter: MakeLimiter, store: FakeRateLimitStore, clock: FakeClock
) -> None:
    # GIVEN instance a joined once and then went quiet (scaled in)
    a = make_limiter(ip_capacity=1_000_000, global_per_minute=LIMIT, instance_id="a")
    await a.admit(IP_A)

    # WHEN instance b joins 90 s later, after a's window and activity have expired
    clock.advance(90)
    b = make_limiter(ip_capacity=1_000_000, global_per_minute=LIMIT, instance_id="b")

    # THEN b gets the whole limit
    assert await drain(b) == LIMIT
    assert set(store.windows) == {"a", "b"}


async def test_a_joined_instance_keeps_its_first_share_until_the_others_have_exchanged_since(
    make_limiter: MakeLimiter, store: FakeRateLimitStore, clock: FakeClock
) -> None:
    # GIVEN instance a, alone, claimed the whole limit, then got no request (its next exchange is late)
    a = make_limiter(ip_capacity=1_000_000, global_per_minute=LIMIT, instance_id="a")
    await a.admit(IP_A)
    assert store.windows["a"].reserved == LIMIT
    # AND b joined, claiming half of it
    b = make_limiter(ip_capacity=1_000_000, global_per_minute=LIMIT, instance_id="b")
    assert (await b.admit(IP_B)).allowed
    assert store.windows["b"].reserved == LIMIT // 2

    # WHEN b exchanges again an interval later, before a has exchanged since b joined
    clock.advance(1)
    assert (await b.admit(IP_B)).allowed
    await settle()
    assert store.windows["a"].exchanged_at == T0

    # THEN b still admits, from what is left of its first share, and no more than that
    assert 1 + 1 + await drain(b, ip=IP_B) == LIMIT // 2
    # AND once a has exchanged (and shrunk its claim, seeing b's), b's claims come from what is free again
    clock.advance(1)
    await a.admit(IP_A)
    await settle()
    assert store.windows["a"].reserved <= LIMIT - LIMIT // 2
    await b.admit(IP_B)
    await settle()
    assert store.windows["b"].reserved == max(
        0, (LIMIT - sum(p.window.total(clock.now) for p in store.windows.values()) - store.windows["a"].reserved) // 2
    )


async def test_an_instance_is_not_left_nothing_by_several_instances_joining_in_one_interval(
    make_limiter: MakeLimiter, store: FakeRateLimitStore, clock: FakeClock
) -> None:
    # GIVEN instance a, alone, claimed the whole limit; then b, c and d joined before a's next
    # exchange, each claiming its share (1/2, 1/3, 1/4 of the limit) without counting the others
    names = ["a", "b", "c", "d"]
    limiters = [make_limiter(ip_capacity=1_000_000, global_per_minute=LIMIT, instance_id=n) for n in names]
    for limiter in limiters:
        assert (await limiter.admit(limiter.instance_id)).allowed
    assert [store.windows[n].reserved for n in names] == [LIMIT, LIMIT // 2, LIMIT // 3, LIMIT // 4]

    # WHEN a exchanges an interval later
    clock.advance(1)
    assert (await limiters[0].admit("a")).allowed
    await settle()

    # THEN a still admits: it claims an even share of what the windows leave, the newcomers'
    # claims being their joining overshoot, not a's loss
    assert store.windows["a"].reserved == (LIMIT - 4) // 4
    assert (await limiters[0].admit("a")).allowed


# --- Store failures ---------------------------------------------------------------------------


async def test_a_store_failure_on_the_first_request_is_raised(
    make_limiter: MakeLimiter, store: FakeRateLimitStore
) -> None:
    store.exchange_error = RateLimitStoreError("tables down")
    limiter = make_limiter()

    with pytest.raises(RateLimitStoreError, match="tables down"):
        await limiter.admit(IP_A)


async def test_the_first_exchange_is_retried_by_the_next_request(
    make_limiter: MakeLimiter, store: FakeRateLimitStore
) -> None:
    store.exchange_error = RateLimitStoreError("tables down")
    limiter = make_limiter()
    with pytest.raises(PortError):
        await limiter.admit(IP_A)

    store.exchange_error = None

    assert (await limiter.admit(IP_A)).allowed


async def test_a_failing_client_update_is_raised_as_the_port_error(
    make_limiter: MakeLimiter, store: FakeRateLimitStore
) -> None:
    limiter = make_limiter()
    await limiter.admit(IP_A)
    store.update_error = RateLimitStoreError("timeout")

    with pytest.raises(RateLimitStoreError, match="timeout"):
        await limiter.admit(IP_A)


async def test_a_failed_update_does_not_use_up_the_global_window(
    make_limiter: MakeLimiter, store: FakeRateLimitStore
) -> None:
    # GIVEN a global limit of 2 and a store whose per-IP updates fail for a while
    limiter = make_limiter(global_per_minute=2)
    await limiter.admit(IP_A)  # 1 of 2 used, first exchange done
    store.update_error = RateLimitStoreError("timeout")
    for _ in range(5):
        with pytest.raises(RateLimitStoreError):
            await limiter.admit(IP_B)

    # WHEN the store recovers
    store.update_error = None

    # THEN the failed requests took no global slot: one more is admitted, then refused
    assert (await limiter.admit(IP_B)).allowed
    assert (await limiter.admit(IP_B)).refused_by == "global"


async def test_a_failing_background_exchange_keeps_the_old_quota(
    make_limiter: MakeLimiter, store: FakeRateLimitStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN an instance with a quota of 10 that has used 4
    limiter = make_limiter(ip_capacity=1_000_000, global_per_minute=10)
    await admit_many(limiter, 4)

    # WHEN its next exchange fails
    clock.advance(1)
    store.exchange_error = RateLimitStoreError("tables down")
    with caplog.at_level(logging.WARNING, logger="ingest.rate_limiter"):
        first = await limiter.admit(IP_A)
        await settle()

    # THEN it keeps admitting within what was left of the old quota, then refuses
    assert first.allowed
    assert "global rate-limit exchange failed" in caplog.text
    decisions = await admit_many(limiter, 6)
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert decisions[-1].refused_by == "global"


async def test_while_the_store_is_down_the_quota_is_not_renewed_even_when_the_window_frees(
    make_limiter: MakeLimiter, store: FakeRateLimitStore, clock: FakeClock
) -> None:
    # GIVEN the quota used up, and the store down
    limiter = make_limiter(ip_capacity=1_000_000, global_per_minute=10)
    await admit_many(limiter, 10)
    store.exchange_error = RateLimitStoreError("tables down")

    # WHEN the window has long slid past those requests
    clock.advance(120)
    await limiter.admit(IP_A)
    await settle()

    # THEN the limiter fails towards refusing
    assert (await limiter.admit(IP_A)).refused_by == "global"

    # ... and it retries the exchange next interval, recovering once the store does
    store.exchange_error = None
    calls = store.exchange_calls
    clock.advance(1)
    await limiter.admit(IP_A)
    await settle()
    assert store.exchange_calls == calls + 1
    assert (await limiter.admit(IP_A)).allowed


async def test_a_failed_exchange_is_retried_no_sooner_than_the_next_interval(
    make_limiter: MakeLimiter, store: FakeRateLimitStore, clock: FakeClock
) -> None:
    limiter = make_limiter()
    await limiter.admit(IP_A)
    store.exchange_error = RateLimitStoreError("tables down")
    clock.advance(1)
    await limiter.admit(IP_A)
    await settle()
    calls = store.exchange_calls

    clock.advance(0.5)
    await admit_many(limiter, 3)
    await settle()

    assert store.exchange_calls == calls


async def test_close_stops_an_exchange_in_flight(make_limiter: MakeLimiter, clock: FakeClock) -> None:
    class HangingStore(FakeRateLimitStore):
        """Answers the first exchange, then never answers again."""

        async def exchange_window(
            self,
            instance_id: str,
            window: SlotWindow,
            now: float,
            reserve: Callable[[Sequence[PeerWindow]], int],
        ) -> Sequence[PeerWindow]:
            if self.exchange_calls >= 1:
                self.exchange_calls += 1
                await asyncio.Event().wait()
            return await super().exchange_window(instance_id, window, now, reserve)

    hanging = HangingStore()
    limiter = make_limiter(on=hanging)
    await limiter.admit(IP_A)
    clock.advance(1)
    await limiter.admit(IP_A)
    await settle()

    await limiter.close()  # returns although the exchange never completes

    assert hanging.exchange_calls == 2


# --- Cost: a request costs its events ---------------------------------------------------------------------------


async def events_admitted(limiter: RateLimiter, clock: FakeClock, client: str, batch: int, seconds: int) -> int:
    """Send `batch`-event requests from `client` whenever the limiter lets it, for `seconds`; count the events."""
    admitted = 0
    for _ in range(seconds * 10):
        while (await limiter.admit(client, batch)).allowed:
            admitted += batch
        clock.advance(0.1)
    return admitted


async def test_a_client_sending_big_batches_gets_the_events_per_second_of_one_sending_single_events(
    make_limiter: MakeLimiter, clock: FakeClock
) -> None:
    limiter = make_limiter(ip_capacity=100, ip_refill=10.0)
    seconds = 600

    singles = await events_admitted(limiter, clock, IP_A, 1, seconds)
    clock.now = T0
    batches = await events_admitted(limiter, clock, IP_B, 500, seconds)

    # The bucket's refill decides for both: 10 events/s, plus the burst (one batch at most).
    assert singles == pytest.approx(100 + 10 * seconds, abs=10)
    assert abs(batches - singles) <= 500
    assert batches <= 500 + 10 * seconds


async def test_a_batch_the_bucket_cannot_pay_is_refused_with_the_wait_for_its_cost(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(ip_capacity=100, ip_refill=10.0)
    assert (await limiter.admit(IP_A, 50)).allowed

    refused = await limiter.admit(IP_A, 100)

    assert (refused.allowed, refused.refused_by, refused.remaining) == (False, "ip", 50)
    assert refused.retry_after_seconds == 5, "50 more tokens at 10 per second"
    assert (await limiter.admit(IP_A, 50)).allowed, "the refused batch took nothing"


async def test_a_batch_bigger_than_the_bucket_is_admitted_when_it_is_full_and_paid_back(
    make_limiter: MakeLimiter, clock: FakeClock
) -> None:
    limiter = make_limiter(ip_capacity=100, ip_refill=10.0)

    assert (await limiter.admit(IP_A, 500)).allowed
    refused = await limiter.admit(IP_A, 1)

    # 400 in debt: 401 tokens to refill before even one event, 40.1 s.
    assert (refused.allowed, refused.remaining, refused.retry_after_seconds) == (False, 0, 41)
    clock.advance(41)
    assert (await limiter.admit(IP_A, 1)).allowed


async def test_the_policy_names_what_each_limit_counts(make_limiter: MakeLimiter) -> None:
    by_client = await make_limiter(ip_capacity=100, ip_refill=10.0).admit(IP_A, 3)
    assert by_client.policy == '100;w=10;comment="events per client"'

    by_service = await make_limiter(global_per_minute=1).admit(IP_B)
    assert (by_service.refused_by, by_service.policy) == ("global", '1;w=60;comment="requests, whole service"')


async def test_an_idle_instance_still_exchanges_and_gives_back_what_it_does_not_use(
    clock: FakeClock, store: FakeRateLimitStore
) -> None:
    # GIVEN an instance that claimed the whole free window while alone, then got no more requests
    def limiter(instance_id: str) -> RateLimiter:
        return RateLimiter(
            store,
            ip_limits=BucketLimits(100, 10),
            global_per_minute=100,
            sync_seconds=0.05,
            clock=clock,
            instance_id=instance_id,
        )

    idle, busy = limiter("idle"), limiter("busy")
    try:
        await idle.admit(IP_A)
        assert store.windows["idle"].reserved == 100
        # WHEN another instance joins (and claims its share) and an interval passes
        await busy.admit("192.0.2.2")
        clock.advance(0.06)  # one interval, not three: the newcomer is still an active instance
        # THEN the idle one exchanges without a request, and holds only its even share of what is
        # free (the newcomer's first claim, made without counting the idle one's, is not taken from
        # it: that is the joining overshoot, see share_quota)
        await wait_until(lambda: store.windows["idle"].reserved <= 50, within=5)
    finally:
        await idle.close()
        await busy.close()
