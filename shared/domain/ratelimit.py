"""Rate-limit arithmetic: pure functions over immutable state, with the time passed in.

- `TokenBucket` / `take_token`: the per-client limit (capacity, refill rate), in events: a
  request costs its number of events.
- `SlotWindow`: request counts in one-second slots over the last minute. It is both the
  client's velocity signal (requests from one IP in the last 60 s) and each instance's share
  of the global sliding window.
- `GlobalQuota`: how many requests this instance may admit until it next hears from the
  others (see `share_quota`).
- `tenant_limits` / `admit_tenant`: each tenant's quota of events a minute, a token bucket
  like the client's, keyed by the tenant (`tenant_bucket_key`) in the same store.

Stores persist these values (see `shared.ports.RateLimitStore`); nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "WINDOW_SECONDS",
    "BucketDecision",
    "BucketLimits",
    "ClientDecision",
    "ClientState",
    "GlobalQuota",
    "PeerWindow",
    "SlotWindow",
    "TokenBucket",
    "MIN_TENANT_EVENTS_PER_MINUTE",
    "admit_client",
    "admit_tenant",
    "idle_after",
    "tenant_bucket_key",
    "tenant_idle_after",
    "tenant_limits",
    "share_quota",
    "take_token",
]

WINDOW_SECONDS = 60

MIN_TENANT_EVENTS_PER_MINUTE = 500
"""The smallest tenant quota that counts: one full batch (500 events) a minute.

A smaller quota could only admit a full batch by going into debt, and a bucket in debt must
outlive the stores' idle expiry to be paid back (`tenant_idle_after`); at this floor a tenant
bucket is never in debt and is forgotten after a minute idle, well within the clients' expiry.
"""


@dataclass(frozen=True, slots=True)
class BucketLimits:
    capacity: int
    refill_per_second: float


def idle_after(limits: BucketLimits, max_cost: int) -> float:
    """Seconds after which a client's state is no different from none at all.

    By then its bucket has refilled from its deepest debt (`capacity - max_cost`) and its
    velocity window is empty, so stores may forget it: state is kept only while it matters.
    """
    deepest = min(0, limits.capacity - max_cost)
    return (limits.capacity - deepest) / limits.refill_per_second + WINDOW_SECONDS


@dataclass(frozen=True, slots=True)
class TokenBucket:
    tokens: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class BucketDecision:
    allowed: bool
    remaining: int
    """Whole tokens left after this request."""
    retry_after: float
    """Seconds until the bucket can pay for this request (0 when allowed)."""
    reset_after: float
    """Seconds until the bucket is full again."""


def take_token(
    bucket: TokenBucket | None, limits: BucketLimits, now: float, cost: int = 1
) -> tuple[TokenBucket, BucketDecision]:
    """Refill for the time elapsed, then take `cost` tokens if the bucket can pay.

    The bucket pays when it holds `min(cost, capacity)` tokens, and then `cost` is taken in
    full, which may leave it below zero: a request dearer than the whole bucket (a batch
    bigger than the burst) is admitted once the bucket is full and its debt is paid back
    before the next one. So every client gets the same events per second in the long run,
    whatever its batch size, and no request is too dear ever to be answered.
    """
    if cost < 1:
        raise ValueError("a request costs at least one token")
    if bucket is None:
        tokens = float(limits.capacity)
    else:
        # A clock that steps backwards (another instance's clock) must not mint tokens.
        elapsed = max(0.0, now - bucket.updated_at)
        tokens = min(float(limits.capacity), bucket.tokens + elapsed * limits.refill_per_second)
    needed = float(min(cost, limits.capacity))
    allowed = tokens >= needed
    if allowed:
        tokens -= cost
    deficit = 0.0 if allowed else needed - tokens
    decision = BucketDecision(
        allowed=allowed,
        remaining=max(0, math.floor(tokens)),
        retry_after=deficit / limits.refill_per_second,
        reset_after=(limits.capacity - tokens) / limits.refill_per_second,
    )
    return TokenBucket(tokens=tokens, updated_at=max(now, bucket.updated_at if bucket else now)), decision


@dataclass(frozen=True, slots=True)
class SlotWindow:
    """Counts per whole second, oldest first, only seconds inside the window."""

    slots: tuple[tuple[int, int], ...] = ()

    def total(self, now: float, window_seconds: int = WINDOW_SECONDS) -> int:
        """Requests counted in the `window_seconds` ending at `now` (this second included)."""
        first = math.floor(now) - window_seconds + 1
        return sum(count for second, count in self.slots if second >= first)

    def record(self, now: float, count: int = 1, window_seconds: int = WINDOW_SECONDS) -> SlotWindow:
        """Add `count` at `now` and drop seconds that left the window."""
        second = math.floor(now)
        first = second - window_seconds + 1
        kept = [(s, c) for s, c in self.slots if s >= first]
        if kept and kept[-1][0] == second:
            kept[-1] = (second, kept[-1][1] + count)
        elif kept and kept[-1][0] > second:
            # `now` is behind the newest slot (clock skew between callers): count it there.
            kept[-1] = (kept[-1][0], kept[-1][1] + count)
        else:
            kept.append((second, count))
        return SlotWindow(tuple(kept))

    def seconds_until_below(self, limit: int, now: float, window_seconds: int = WINDOW_SECONDS) -> float:
        """Seconds until the total in the window falls below `limit` (0 if it already is)."""
        first = math.floor(now) - window_seconds + 1
        live = [(s, c) for s, c in self.slots if s >= first]
        total = sum(c for _, c in live)
        for second, count in live:
            if total < limit:
                break
            total -= count
            # This slot leaves the window once `now` reaches second + window_seconds.
            wait = second + window_seconds - now
            if total < limit:
                return max(wait, 0.0)
        return 0.0 if total < limit else float(window_seconds)

    @classmethod
    def merge(cls, windows: Iterable[SlotWindow]) -> SlotWindow:
        """Sum several windows second by second (the global view of all instances)."""
        totals: dict[int, int] = {}
        for window in windows:
            for second, count in window.slots:
                totals[second] = totals.get(second, 0) + count
        return cls(tuple(sorted(totals.items())))

    def to_list(self) -> list[list[int]]:
        """A JSON-friendly form for stores."""
        return [[s, c] for s, c in self.slots]

    @classmethod
    def from_list(cls, items: Iterable[Iterable[int]]) -> SlotWindow:
        pairs = []
        for item in items:
            second, count = item
            pairs.append((int(second), int(count)))
        return cls(tuple(sorted(pairs)))


@dataclass(frozen=True, slots=True)
class ClientState:
    """Everything kept per client (by its keyed hash, never its address): its token bucket and its recent requests."""

    bucket: TokenBucket
    recent: SlotWindow


@dataclass(frozen=True, slots=True)
class ClientDecision:
    bucket: BucketDecision
    requests_last_minute: int
    """Requests from this IP in the last 60 s, this one included (the velocity signal)."""


def admit_client(
    state: ClientState | None, limits: BucketLimits, now: float, cost: int = 1
) -> tuple[ClientState, ClientDecision]:
    """Count the request towards the client's velocity, then charge `cost` (its events) to its bucket.

    Refused requests are counted too: a client hammering past its limit is exactly what
    the velocity signal is for.
    """
    recent = (state.recent if state else SlotWindow()).record(now)
    bucket, decision = take_token(state.bucket if state else None, limits, now, cost)
    return ClientState(bucket=bucket, recent=recent), ClientDecision(decision, recent.total(now))


@dataclass(frozen=True, slots=True)
class PeerWindow:
    """One instance's record in the global window, as it last wrote it."""

    instance_id: str
    window: SlotWindow
    """What the instance had admitted, in one-second slots."""
    exchanged_at: float
    reserved: int = 0
    """The allowance it claimed at that exchange: what it may still admit until its next one."""


@dataclass(frozen=True, slots=True)
class GlobalQuota:
    """This instance's allowance of the global window until the next exchange."""

    allowance: int
    """Requests this instance may admit before it next exchanges counts."""
    window_total: int
    """Requests counted in the window by all instances at the exchange."""
    instances: int
    """Active instances, this one included."""


def share_quota(
    peers: Sequence[PeerWindow],
    instance_id: str,
    own: SlotWindow,
    limit: int,
    now: float,
    active_within: float,
    *,
    joining: bool = False,
    void_claims: Collection[str] = (),
    unaware_claims: Collection[str] = (),
) -> GlobalQuota:
    """Claim a share of the global window that no instance holds yet.

    Every instance's record holds what it admitted (`window`) and what it may still admit
    (`reserved`, claimed at its last exchange). What is left, `limit - every window -
    every other active instance's reservation`, is free; this instance claims an even share
    of it (free / active instances) and publishes that claim as its own reservation. So at
    any moment the windows plus the reservations stay within the limit, and an instance
    never admits more than it claimed: together the instances cannot pass the limit.

    A `joining` instance (its first exchange) claims an even share of `limit - windows`
    instead, ignoring what the others hold: otherwise a newcomer would refuse every request
    until the others next exchange and see it. The others shrink their claims at their
    next exchange; until they have, the newcomer keeps what is left of this share
    (`ingest.rate_limiter.RateLimiter`), not what their older claims leave.

    Error bound: a joining instance can overshoot the window by at most its one share.
    Claims are read-then-written, so instances exchanging at the same moment claim from
    the same free capacity; each takes at most free / active, which stays within it as
    long as each knows the others. A live instance that cannot reach the store for longer than
    `active_within` keeps admitting from its claim while others stop counting it: at most
    that claim. Capacity freed as the window slides is handed out at the next exchange,
    which errs on the side of refusing.

    `void_claims` names instances known to be gone (a killed host this one replaces): what
    they admitted still counts in the window, but their claims and their share do not.

    `unaware_claims` names active instances whose claim was made without counting this
    one's (a newcomer's joining claim, above): they count as instances, but their claims are
    not taken from what is free. Counting them would take that newcomer's overshoot out of
    this instance's share, to nothing when several join at once (alone, this one claimed
    the whole limit; newcomers claim 1/2, 1/3, 1/4 ... of it); the overshoot is still the
    newcomer's one share.
    """
    others = [peer for peer in peers if peer.instance_id != instance_id]
    active = [
        peer for peer in others if now - peer.exchanged_at <= active_within and peer.instance_id not in void_claims
    ]
    total = own.total(now) + sum(peer.window.total(now) for peer in others)
    held = sum(peer.reserved for peer in active if peer.instance_id not in unaware_claims)
    free = max(0, limit - total - (0 if joining else held))
    instances = 1 + len(active)
    return GlobalQuota(allowance=free // instances, window_total=total, instances=instances)


def tenant_bucket_key(tenant_id: str) -> str:
    """The tenant's bucket's key in the rate-limit store: `tenant/<tenantId>`.

    Client keys are hex digests, so a key with a `/` is never a client's; a tenant id has no
    `/` (`TENANT_ID_PATTERN`), so the key names one tenant only.
    """
    return f"tenant/{tenant_id}"


def tenant_limits(events_per_minute: int) -> BucketLimits:
    """A tenant's bucket: `events_per_minute` deep, refilled at a sixtieth of it a second.

    A quota under `MIN_TENANT_EVENTS_PER_MINUTE` counts as that floor.
    """
    capacity = max(events_per_minute, MIN_TENANT_EVENTS_PER_MINUTE)
    return BucketLimits(capacity=capacity, refill_per_second=capacity / WINDOW_SECONDS)


def tenant_idle_after(limits: BucketLimits, max_cost: int) -> float:
    """Seconds after which a tenant's bucket is no different from none at all (refilled from its deepest debt).

    Unlike a client's (`idle_after`), a tenant's state keeps no velocity window, so a full
    bucket is all it takes.
    """
    deepest = min(0, limits.capacity - max_cost)
    return (limits.capacity - deepest) / limits.refill_per_second


def admit_tenant(
    state: ClientState | None, limits: BucketLimits, now: float, cost: int
) -> tuple[ClientState, BucketDecision]:
    """Charge `cost` events to the tenant's bucket (see `take_token`). No velocity window is kept:
    the state is stored as a client's, with an empty one."""
    bucket, decision = take_token(state.bucket if state else None, limits, now, cost)
    return ClientState(bucket=bucket, recent=SlotWindow()), decision
