"""Rate-limit arithmetic (`shared.domain.ratelimit`): pure functions, time passed in.

Times are chosen exactly representable in binary (whole and half seconds) so the
assertions can be exact where the contract is exact.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shared.domain.ratelimit import (
    WINDOW_SECONDS,
    BucketDecision,
    BucketLimits,
    ClientState,
    GlobalQuota,
    PeerWindow,
    SlotWindow,
    TokenBucket,
    admit_client,
    idle_after,
    share_quota,
    take_token,
)

T0 = 1_000_000.0
"""A whole second, far from zero, like a Unix time."""

LIMITS = BucketLimits(capacity=100, refill_per_second=10.0)


class Bucket:
    """Drives `take_token` the way a store does: keeps the returned state between calls."""

    def __init__(self, limits: BucketLimits) -> None:
        self.limits = limits
        self.state: TokenBucket | None = None

    def take(self, now: float) -> BucketDecision:
        self.state, decision = take_token(self.state, self.limits, now)
        return decision

    def take_many(self, count: int, now: float) -> list[BucketDecision]:
        return [self.take(now) for _ in range(count)]


@pytest.fixture
def make_bucket() -> Callable[..., Bucket]:
    def make(capacity: int = 100, refill_per_second: float = 10.0) -> Bucket:
        return Bucket(BucketLimits(capacity, refill_per_second))

    return make


# --- Token bucket -----------------------------------------------------------------------------


def test_a_full_bucket_admits_its_capacity_at_one_instant_then_refuses(make_bucket: Callable[..., Bucket]) -> None:
    bucket = make_bucket()

    decisions = bucket.take_many(100, T0)
    refused = bucket.take(T0)

    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions] == list(range(99, -1, -1))
    assert refused.allowed is False
    assert refused.remaining == 0
    assert refused.retry_after == pytest.approx(0.1)
    assert refused.reset_after == pytest.approx(10.0)


def test_an_admitted_request_reports_no_wait_and_the_time_to_refill(make_bucket: Callable[..., Bucket]) -> None:
    bucket = make_bucket()

    first = bucket.take(T0)

    assert (first.allowed, first.remaining, first.retry_after) == (True, 99, 0.0)
    assert first.reset_after == pytest.approx(0.1)


def test_half_a_second_refills_five_tokens(make_bucket: Callable[..., Bucket]) -> None:
    # GIVEN an empty bucket
    bucket = make_bucket()
    bucket.take_many(100, T0)

    # WHEN half a second passes
    decisions = bucket.take_many(6, T0 + 0.5)

    # THEN exactly five more requests are admitted
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]


def test_the_bucket_never_holds_more_than_its_capacity(make_bucket: Callable[..., Bucket]) -> None:
    bucket = make_bucket()
    bucket.take(T0)

    # WHEN the bucket sits idle for an hour
    decisions = bucket.take_many(101, T0 + 3600)

    assert [d.allowed for d in decisions].count(True) == 100
    assert decisions[0].remaining == 99
    assert bucket.state is not None
    assert bucket.state.tokens == 0.0


def test_a_clock_stepping_backwards_mints_no_tokens(make_bucket: Callable[..., Bucket]) -> None:
    # GIVEN an empty bucket last updated at T0 + 10
    bucket = make_bucket()
    bucket.take_many(100, T0 + 10)

    # WHEN a caller with a clock ten seconds behind asks
    behind = bucket.take(T0)

    # THEN it is refused, and the bucket still counts refills from the later time
    assert behind.allowed is False
    assert bucket.state == TokenBucket(tokens=0.0, updated_at=T0 + 10)
    assert [d.allowed for d in bucket.take_many(6, T0 + 10.5)] == [True] * 5 + [False]


def test_remaining_counts_whole_tokens_and_retry_after_the_missing_fraction(make_bucket: Callable[..., Bucket]) -> None:
    # GIVEN an empty bucket, a quarter second later 2.5 tokens have refilled
    bucket = make_bucket()
    bucket.take_many(100, T0)

    first, second, third = bucket.take_many(3, T0 + 0.25)

    assert (first.allowed, first.remaining) == (True, 1)  # 1.5 tokens left
    assert first.reset_after == pytest.approx((100 - 1.5) / 10)
    assert (second.allowed, second.remaining) == (True, 0)  # 0.5 left
    assert (third.allowed, third.remaining) == (False, 0)
    assert third.retry_after == pytest.approx(0.05)  # half a token at 10 per second
    assert third.reset_after == pytest.approx(9.95)


def test_a_refused_request_takes_nothing(make_bucket: Callable[..., Bucket]) -> None:
    bucket = make_bucket(capacity=1, refill_per_second=1.0)
    bucket.take(T0)

    bucket.take_many(10, T0 + 0.5)  # refused, at half a token

    assert bucket.take(T0 + 1.0).allowed is True


# --- SlotWindow -------------------------------------------------------------------------------


def test_requests_in_the_same_second_share_a_slot() -> None:
    window = SlotWindow().record(T0).record(T0 + 0.25).record(T0 + 0.999).record(T0 + 1)

    assert window.slots == ((int(T0), 3), (int(T0) + 1, 1))
    assert window.total(T0 + 1) == 4


def test_a_request_counts_until_its_second_is_sixty_seconds_old() -> None:
    # GIVEN one request at the start of a second
    window = SlotWindow().record(T0)

    # THEN it is in the window up to the end of second T0 + 59 and gone at T0 + 60
    assert window.total(T0) == 1
    assert window.total(T0 + 59.999) == 1
    assert window.total(T0 + 60) == 0


def test_a_request_late_in_a_second_leaves_with_its_whole_second() -> None:
    # The window is kept in whole seconds: a request at T0 + 0.75 leaves when second T0 does,
    # at T0 + 60, i.e. 59.25 s after it was made, not 60 s.
    window = SlotWindow().record(T0 + 0.75)

    assert window.total(T0 + 59.999) == 1
    assert window.total(T0 + 60) == 0
    assert window.total(T0 + 60.75) == 0


def test_recording_drops_seconds_that_left_the_window() -> None:
    window = SlotWindow().record(T0).record(T0 + 30).record(T0 + 60)

    assert window.slots == ((int(T0) + 30, 1), (int(T0) + 60, 1))


def test_a_record_behind_the_newest_slot_is_counted_in_the_newest_slot() -> None:
    # GIVEN a window written by a caller whose clock is ahead
    window = SlotWindow().record(T0 + 5)

    # WHEN a caller with a clock behind records
    window = window.record(T0)

    assert window.slots == ((int(T0) + 5, 2),)


def test_a_window_can_take_a_count_back() -> None:
    window = SlotWindow().record(T0, count=3).record(T0, count=-1)

    assert window.total(T0) == 2


def test_a_custom_window_length_is_honoured() -> None:
    window = SlotWindow().record(T0, window_seconds=10).record(T0 + 9, window_seconds=10)

    assert window.total(T0 + 9, window_seconds=10) == 2
    assert window.total(T0 + 10, window_seconds=10) == 1


def test_merge_sums_windows_second_by_second() -> None:
    a = SlotWindow(((1000, 1), (1002, 2)))
    b = SlotWindow(((1001, 5), (1002, 3)))

    merged = SlotWindow.merge([a, b, SlotWindow()])

    assert merged.slots == ((1000, 1), (1001, 5), (1002, 5))
    assert merged.total(1002) == a.total(1002) + b.total(1002)


def test_merging_nothing_gives_an_empty_window() -> None:
    assert SlotWindow.merge([]) == SlotWindow()


def test_a_window_survives_the_round_trip_through_its_list_form() -> None:
    window = SlotWindow().record(T0).record(T0).record(T0 + 7)

    as_list = window.to_list()

    assert as_list == [[int(T0), 2], [int(T0) + 7, 1]]
    assert SlotWindow.from_list(as_list) == window


def test_from_list_orders_slots_oldest_first() -> None:
    assert SlotWindow.from_list([(1005, 1), [1001, 2]]).slots == ((1001, 2), (1005, 1))


@pytest.fixture
def busy_window() -> SlotWindow:
    """3 requests at second 1000, 2 at 1010, 5 at 1020: 10 in all."""
    return SlotWindow(((1000, 3), (1010, 2), (1020, 5)))


def test_seconds_until_below_is_zero_when_already_below(busy_window: SlotWindow) -> None:
    assert busy_window.seconds_until_below(11, 1030) == 0.0


def test_seconds_until_below_waits_for_the_oldest_slot_to_leave(busy_window: SlotWindow) -> None:
    # Dropping second 1000 (3 requests) brings 10 down to 7: it leaves at 1000 + 60.
    assert busy_window.seconds_until_below(10, 1030) == 30.0
    assert busy_window.seconds_until_below(10, 1030.25) == 29.75


def test_seconds_until_below_waits_for_as_many_slots_as_needed(busy_window: SlotWindow) -> None:
    # Below 5 means dropping 1000 (7 left), 1010 (5 left, not below) and 1020 (0).
    assert busy_window.seconds_until_below(5, 1030) == 50.0


def test_seconds_until_below_agrees_with_total(busy_window: SlotWindow) -> None:
    wait = busy_window.seconds_until_below(8, 1030.5)

    assert busy_window.total(1030.5 + wait - 0.001) >= 8
    assert busy_window.total(1030.5 + wait) < 8


def test_seconds_until_below_ignores_slots_already_outside_the_window(busy_window: SlotWindow) -> None:
    # At 1065 second 1000 has gone (7 left); dropping 1010 leaves 5 < 6, at 1070.
    assert busy_window.seconds_until_below(6, 1065) == 5.0


def test_a_limit_that_can_never_be_met_waits_a_whole_window(busy_window: SlotWindow) -> None:
    assert busy_window.seconds_until_below(0, 1030) == float(WINDOW_SECONDS)


# --- admit_client: velocity plus bucket -------------------------------------------------------


class Client:
    def __init__(self, limits: BucketLimits) -> None:
        self.limits = limits
        self.state: ClientState | None = None

    def request(self, now: float) -> tuple[bool, int]:
        self.state, decision = admit_client(self.state, self.limits, now)
        return decision.bucket.allowed, decision.requests_last_minute


def test_refused_requests_count_towards_the_velocity() -> None:
    client = Client(BucketLimits(capacity=2, refill_per_second=0.001))

    outcomes = [client.request(T0) for _ in range(5)]

    assert outcomes == [(True, 1), (True, 2), (False, 3), (False, 4), (False, 5)]


def test_twelve_requests_in_a_minute_report_eleven_and_twelve_on_the_last_two() -> None:
    client = Client(LIMITS)

    counts = [client.request(T0 + 5 * i)[1] for i in range(12)]  # T0 .. T0 + 55

    assert counts[-2:] == [11, 12]
    assert counts == list(range(1, 13))


def test_the_velocity_forgets_requests_a_minute_old() -> None:
    client = Client(LIMITS)
    for i in range(12):
        client.request(T0 + 5 * i)

    # At T0 + 60 the request of T0 has left the window; this one is counted.
    assert client.request(T0 + 60) == (True, 12)


# --- share_quota: claiming a share of the global window ---------------------------------------

NOW = 2000.0
ME = "me"


def peer(name: str, requests: int, *, exchanged_ago: float = 0.0, at: float = NOW, reserved: int = 0) -> PeerWindow:
    window = SlotWindow().record(at, count=requests) if requests else SlotWindow()
    return PeerWindow(name, window, NOW - exchanged_ago, reserved)


def own(requests: int, at: float = NOW) -> SlotWindow:
    return SlotWindow().record(at, count=requests) if requests else SlotWindow()


def quota_for(peers: list[PeerWindow], mine: int = 0, limit: int = 100) -> GlobalQuota:
    return share_quota(peers, ME, own(mine), limit, NOW, active_within=3)


def test_alone_an_instance_may_use_all_that_is_left() -> None:
    assert quota_for([], mine=30) == GlobalQuota(allowance=70, window_total=30, instances=1)


def test_what_is_free_is_split_evenly_among_active_instances() -> None:
    quota = quota_for([peer("a", 10)], mine=30)

    assert quota == GlobalQuota(allowance=30, window_total=40, instances=2)


def test_what_others_reserved_is_not_free() -> None:
    # GIVEN a peer that admitted 10 and may still admit the 40 it claimed
    quota = quota_for([peer("a", 10, reserved=40)], mine=10)

    # THEN only 100 - 20 - 40 = 40 is free, and this instance claims half of it
    assert quota.allowance == 20


def test_the_callers_own_old_record_is_replaced_not_counted() -> None:
    quota = quota_for([peer(ME, 50, reserved=50)], mine=60)

    assert quota == GlobalQuota(allowance=40, window_total=60, instances=1)


def test_a_division_that_does_not_come_out_even_is_rounded_down() -> None:
    quota = quota_for([peer("a", 0), peer("b", 0)])

    assert quota.allowance == 33


def test_a_stale_instance_counts_in_the_total_but_holds_nothing() -> None:
    quota = quota_for([peer("a", 10), peer("gone", 20, exchanged_ago=10, at=NOW - 10, reserved=50)])

    assert quota == GlobalQuota(allowance=35, window_total=30, instances=2)


def test_an_instance_exactly_at_the_activity_limit_still_counts() -> None:
    assert quota_for([peer("a", 0, exchanged_ago=3)]).instances == 2


def test_the_allowance_is_never_negative() -> None:
    assert quota_for([peer("a", 90, reserved=30)], mine=60).allowance == 0


def test_requests_that_left_the_window_free_their_capacity() -> None:
    assert quota_for([peer("a", 80, at=NOW - WINDOW_SECONDS)]).allowance == 50


@pytest.mark.parametrize("counts", [(0,), (10, 20), (1, 2, 3, 4), (99, 0, 0), (33, 33, 33, 1)])
def test_claims_made_one_after_another_never_pass_the_limit(counts: tuple[int, ...]) -> None:
    # GIVEN established instances that each admitted `count` out of an earlier claim of that size
    records = {f"i{n}": PeerWindow(f"i{n}", SlotWindow(), NOW - 1, count) for n, count in enumerate(counts)}

    # WHEN each claims again in turn, seeing the others' latest records
    for n, count in enumerate(counts):
        name = f"i{n}"
        quota = share_quota(list(records.values()), name, own(count), 100, NOW, active_within=3)
        records[name] = PeerWindow(name, own(count), NOW, quota.allowance)

    # THEN windows plus claims still fit in the limit
    assert sum(r.window.total(NOW) + r.reserved for r in records.values()) <= 100


def test_a_joining_instance_claims_a_fair_share_even_if_others_hold_everything() -> None:
    quota = share_quota([peer("a", 10, reserved=90)], ME, own(0), 100, NOW, active_within=3, joining=True)

    assert quota.allowance == 45


@pytest.mark.parametrize("counts", [(0, 0), (10, 20), (1, 2, 3, 4)])
def test_claims_made_from_the_same_snapshot_never_pass_the_limit(counts: tuple[int, ...]) -> None:
    # GIVEN every instance reads the same records before any of them writes
    snapshot = [PeerWindow(f"i{n}", own(count), NOW, 0) for n, count in enumerate(counts)]

    claims = [share_quota(snapshot, f"i{n}", own(c), 100, NOW, active_within=3).allowance for n, c in enumerate(counts)]

    assert sum(counts) + sum(claims) <= 100


def test_a_client_is_forgotten_only_once_its_deepest_debt_is_repaid_and_its_window_empty() -> None:
    limits = BucketLimits(capacity=100, refill_per_second=10.0)
    # A 500-event batch from a full bucket leaves it at -400: 50 s to refill, then 60 s of window.
    assert idle_after(limits, max_cost=500) == 50 + WINDOW_SECONDS
    bucket, _ = take_token(None, limits, 0.0, cost=500)
    refilled, decision = take_token(bucket, limits, 50.0, cost=1)
    assert decision.allowed
    assert refilled.tokens == 99.0, "as full as a fresh bucket: forgetting it changes nothing"
    # Batches no bigger than the bucket leave no debt.
    assert idle_after(limits, max_cost=100) == 10 + WINDOW_SECONDS


def test_a_request_costs_at_least_one_token() -> None:
    with pytest.raises(ValueError, match="at least one"):
        take_token(None, BucketLimits(capacity=1, refill_per_second=1.0), 0.0, cost=0)


def test_a_replaced_instance_still_counts_what_it_admitted_but_not_its_claim() -> None:
    # GIVEN a killed predecessor that admitted 40 of 100 and claimed the 60 left
    predecessor = peer("old", 40, reserved=60)
    # WHEN its successor exchanges, knowing it replaces it
    quota = share_quota([predecessor], ME, own(0), 100, NOW, active_within=3, void_claims={"old"})
    # THEN the 40 admitted still count, its claim does not, and it is not a live instance
    assert quota.window_total == 40
    assert quota.allowance == 60
    assert quota.instances == 1
    # (without knowing, the successor would hold the 60 against itself)
    assert share_quota([predecessor], ME, own(0), 100, NOW, active_within=3).allowance == 0


def test_an_instance_unaware_of_this_one_counts_as_an_instance_but_not_its_claim() -> None:
    newcomer = peer("newcomer", 10, reserved=45)
    quota = share_quota([newcomer], ME, own(0), 100, NOW, active_within=3.0, unaware_claims={"newcomer"})
    assert (quota.allowance, quota.instances, quota.window_total) == ((100 - 10) // 2, 2, 10)
    assert quota_for([newcomer]).allowance == (100 - 10 - 45) // 2
