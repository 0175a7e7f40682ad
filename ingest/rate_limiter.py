"""The rate limits of the ingest API, over a shared `RateLimitStore`.

Per request: the global window (requests) admits first, in memory (this instance's quota,
see `shared.domain.ratelimit.share_quota`), then the client's token bucket (events: a request
costs its number of events) in one store round trip, which also yields the client's requests
in the last minute (the velocity signal).
The instance exchanges its global-window counts with the others every `sync_seconds`, in
the background, so no request waits on it and no single entity takes every request.
A joining instance's first claim ignores what the others hold (`share_quota`, `joining`); until
each of them has exchanged since, their claims were made without it (one alone claims the whole
limit), so it keeps what is left of that first share instead of shrinking to what they leave;
and they, until it remakes its claim, do not take that first claim out of their own shares.

A request with a write key then pays its events into its tenant's bucket too (`admit_tenant`),
the third limit: one tenant over its quota is refused while the others are not.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from shared.domain.ratelimit import (
    WINDOW_SECONDS,
    BucketDecision,
    BucketLimits,
    ClientDecision,
    ClientState,
    GlobalQuota,
    PeerWindow,
    SlotWindow,
    admit_client,
    admit_tenant,
    share_quota,
    tenant_bucket_key,
    tenant_limits,
)
from shared.ports import PortError, RateLimitStore

__all__ = ["RateLimitDecision", "RateLimiter"]

logger = logging.getLogger(__name__)

# An instance that has not exchanged for this many sync intervals no longer holds a share.
_ACTIVE_SYNC_INTERVALS = 3


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    """The outcome for one request, with what the `RateLimit-*` headers report."""

    allowed: bool
    refused_by: Literal["ip", "global", "tenant"] | None
    limit: int
    remaining: int
    reset_seconds: int
    retry_after_seconds: int
    requests_last_minute: int
    policy: str = ""
    """The `RateLimit-Policy` header: quota, window and, as a comment, the unit counted."""


@dataclass(frozen=True, slots=True)
class _Joined:
    """This instance's first claim, kept while an instance that made its claim before it is still active."""

    claims_seen: dict[str, float]
    """The other instances' records read at the join: instance id -> when it last exchanged."""
    allowance: int
    admitted_before: int
    """`_admitted_total` at the join: what was admitted since counts against `allowance`."""


class RateLimiter:
    """Per-client-IP token bucket plus a global sliding window shared by all instances."""

    def __init__(
        self,
        store: RateLimitStore,
        *,
        ip_limits: BucketLimits,
        global_per_minute: int,
        sync_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
        instance_id: str | None = None,
        predecessor_id: str | None = None,
    ) -> None:
        self._store = store
        # What a predecessor (a killed host this one replaces) admitted still counts, but its
        # claim is void: it will admit nothing more.
        self._void_claims = frozenset({predecessor_id} if predecessor_id else ())
        self._ip_limits = ip_limits
        # The bucket's window: the time it takes to refill from empty.
        refill_window = max(1, math.ceil(ip_limits.capacity / ip_limits.refill_per_second))
        self._ip_policy = f'{ip_limits.capacity};w={refill_window};comment="events per client"'
        self._global_limit = global_per_minute
        self._sync_seconds = sync_seconds
        self._clock = clock
        self.instance_id = instance_id or uuid.uuid4().hex
        self._own = SlotWindow()
        self._admitted_total = 0
        self._admitted_at_exchange = 0
        self._quota: GlobalQuota | None = None
        self._global_view = SlotWindow()
        self._next_exchange_at = 0.0
        self._exchange_task: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._first_exchange = asyncio.Lock()
        self._joined: _Joined | None = None
        # Who was in the store at the last exchange, and the claims of those that joined since,
        # by when they were made: not counted until remade (see `share_quota`, `unaware_claims`).
        self._seen_ids: frozenset[str] | None = None
        self._newcomer_claims: dict[str, float] = {}

    async def admit(self, client_key: str, cost: int = 1) -> RateLimitDecision:
        """Decide for one request of `cost` events from the client keyed `client_key`.

        `client_key` is the keyed hash of the client (`shared.domain.client_identity`), never
        its address: it is what the store keeps. Raises `PortError` if the store fails.
        """
        now = self._clock()
        if self._quota is None:
            async with self._first_exchange:  # concurrent first requests share one exchange
                if self._quota is None:
                    await self._exchange()
                    self._keeper = asyncio.create_task(self._exchange_while_idle())
        elif now >= self._next_exchange_at and self._exchange_task is None:
            self._exchange_task = asyncio.create_task(self._exchange_in_background())
        if not self._take_global(now):
            return self._refused_by_global(now)

        limits = self._ip_limits

        def change(state: ClientState | None) -> tuple[ClientState, ClientDecision]:
            return admit_client(state, limits, now, cost)

        try:
            client = await self._store.update_client(client_key, change)
        except BaseException:
            self._give_back_global(now)
            raise
        if not client.bucket.allowed:
            self._give_back_global(now)
        bucket = client.bucket
        return RateLimitDecision(
            allowed=bucket.allowed,
            refused_by=None if bucket.allowed else "ip",
            limit=limits.capacity,
            remaining=bucket.remaining,
            reset_seconds=math.ceil(bucket.reset_after),
            retry_after_seconds=max(1, math.ceil(bucket.retry_after)) if not bucket.allowed else 0,
            requests_last_minute=client.requests_last_minute,
            policy=self._ip_policy,
        )

    async def admit_tenant(self, tenant_id: str, cost: int, events_per_minute: int) -> RateLimitDecision:
        """Charge `cost` events to the tenant's quota of `events_per_minute` (see `tenant_limits`).

        Called once the request passed the client and global limits and its key was checked.
        Raises `PortError` if the store fails.
        """
        now = self._clock()
        limits = tenant_limits(events_per_minute)

        def change(state: ClientState | None) -> tuple[ClientState, BucketDecision]:
            return admit_tenant(state, limits, now, cost)

        bucket = await self._store.update_client(tenant_bucket_key(tenant_id), change)
        return RateLimitDecision(
            allowed=bucket.allowed,
            refused_by=None if bucket.allowed else "tenant",
            limit=limits.capacity,
            remaining=bucket.remaining,
            reset_seconds=math.ceil(bucket.reset_after),
            retry_after_seconds=max(1, math.ceil(bucket.retry_after)) if not bucket.allowed else 0,
            requests_last_minute=0,
            policy=f'{limits.capacity};w={WINDOW_SECONDS};comment="events per tenant"',
        )

    async def close(self) -> None:
        """Stop the background exchange (the store is closed by its owner)."""
        for task in (self._keeper, self._exchange_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _exchange_while_idle(self) -> None:
        """Exchange when one is due even if no request comes to start it.

        A claim is made for the next interval only; an instance that stops getting requests
        must still give back the rest of it, or the other instances' shares stay small
        (refusing) until it counts as inactive, `_ACTIVE_SYNC_INTERVALS` later.
        """
        while True:
            await asyncio.sleep(self._sync_seconds)
            if self._clock() >= self._next_exchange_at and self._exchange_task is None:
                self._exchange_task = asyncio.create_task(self._exchange_in_background())

    def _take_global(self, now: float) -> bool:
        assert self._quota is not None
        if self._admitted_total - self._admitted_at_exchange >= self._quota.allowance:
            return False
        self._admitted_total += 1
        self._own = self._own.record(now)
        return True

    def _give_back_global(self, now: float) -> None:
        self._admitted_total -= 1
        self._own = self._own.record(now, count=-1)

    def _refused_by_global(self, now: float) -> RateLimitDecision:
        wait = self._global_view.seconds_until_below(self._global_limit, now)
        # Not full at the last exchange: this instance used its share; the next exchange
        # hands out a new one.
        retry = max(1, math.ceil(wait if wait > 0 else self._sync_seconds))
        return RateLimitDecision(
            allowed=False,
            refused_by="global",
            limit=self._global_limit,
            remaining=0,
            reset_seconds=retry,
            retry_after_seconds=retry,
            requests_last_minute=0,
            policy=f'{self._global_limit};w=60;comment="requests, whole service"',
        )

    async def _exchange(self) -> None:
        now = self._clock()
        own = self._own
        admitted_before = self._admitted_total
        joining = self._quota is None
        quotas: list[GlobalQuota] = []

        def reserve(peers: Sequence[PeerWindow]) -> int:
            quotas.append(self._quota_from(peers, own, now, admitted_before))
            return quotas[-1].allowance

        peers = await self._store.exchange_window(self.instance_id, own, now, reserve)
        # The claim published is the last one computed (a store may retry the write).
        self._quota = quotas[-1] if quotas else self._quota_from(peers, own, now, admitted_before)
        if joining:
            seen = {p.instance_id: p.exchanged_at for p in peers if p.instance_id != self.instance_id}
            self._joined = _Joined(seen, self._quota.allowance, admitted_before)
        elif not self._unaware_of_join(peers, now):
            self._joined = None  # every active instance has claimed knowing this one
        self._newcomer_claims = self._claims_of_newcomers(peers)
        self._seen_ids = frozenset(p.instance_id for p in peers)
        # Requests admitted while the exchange was in flight were not in the window sent;
        # they count against the new allowance.
        self._admitted_at_exchange = admitted_before
        self._global_view = SlotWindow.merge([own, *(p.window for p in peers if p.instance_id != self.instance_id)])
        self._next_exchange_at = now + self._sync_seconds

    def _quota_from(self, peers: Sequence[PeerWindow], own: SlotWindow, now: float, admitted: int) -> GlobalQuota:
        quota = share_quota(
            peers,
            self.instance_id,
            own,
            self._global_limit,
            now,
            active_within=self._sync_seconds * _ACTIVE_SYNC_INTERVALS,
            joining=self._quota is None,
            void_claims=self._void_claims,
            unaware_claims=self._claims_of_newcomers(peers).keys(),
        )
        joined = self._joined
        if joined is not None and self._quota is not None and self._unaware_of_join(peers, now):
            # An active instance still holds a claim made before this one joined (alone, the whole
            # limit): counting it would leave this one nothing until that instance next exchanges,
            # late under load. Keep the rest of the first share: the joining overshoot stays one share.
            left = joined.allowance - (admitted - joined.admitted_before)
            if left > quota.allowance:
                quota = replace(quota, allowance=left)
        return quota

    def _claims_of_newcomers(self, peers: Sequence[PeerWindow]) -> dict[str, float]:
        """The claims of instances that joined since this one's last exchange, while not remade."""
        if self._seen_ids is None:
            return {}  # joining: no claim is counted anyway
        return {
            p.instance_id: p.exchanged_at
            for p in peers
            if p.instance_id != self.instance_id
            and (p.instance_id not in self._seen_ids or self._newcomer_claims.get(p.instance_id) == p.exchanged_at)
        }

    def _unaware_of_join(self, peers: Sequence[PeerWindow], now: float) -> bool:
        """Whether an active instance's claim is still the one read at this instance's join."""
        joined = self._joined
        if joined is None:
            return False
        active_within = self._sync_seconds * _ACTIVE_SYNC_INTERVALS
        return any(
            joined.claims_seen.get(peer.instance_id) == peer.exchanged_at
            and now - peer.exchanged_at <= active_within
            and peer.instance_id not in self._void_claims
            for peer in peers
        )

    async def _exchange_in_background(self) -> None:
        try:
            await self._exchange()
        except PortError as exc:
            # Keep the last quota; it only shrinks as requests are admitted, so a store
            # outage fails towards refusing, never towards letting a flood through.
            logger.warning("global rate-limit exchange failed, retrying next interval: %s", exc)
            self._next_exchange_at = self._clock() + self._sync_seconds
        finally:
            self._exchange_task = None
