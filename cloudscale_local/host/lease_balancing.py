"""Which leases an instance takes: the change feed processor's equal-partitions strategy.

Every acquire interval each instance reads all of a function's leases and asks
`leases_to_take` (`EqualPartitionsBalancingStrategy.SelectLeasesToTake` in the Cosmos DB SDK,
sources in `docs/architecture.md`):

- an unowned or expired lease counts as free; every other owner is a live instance;
- target = ceil(leases / live instances, this one included), at least 1;
- below target, take free leases first, as many as needed;
- with none free, steal one lease per cycle from the instance holding the most, if it holds
  more than target (or more than target - 1 when this instance needs more than one).

Plain arithmetic on what was read: no I/O, the caller acquires (and may lose the race).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from cloudscale_local.host.leases import Lease

__all__ = ["leases_to_take", "target_count"]


def target_count(leases: int, owners: int) -> int:
    """How many leases each of `owners` live instances should hold."""
    return math.ceil(leases / owners) if leases > owners else 1


def leases_to_take(leases: Sequence[Lease], me: str, now: float, expiration: float) -> list[Lease]:
    """The leases `me` should try to acquire now (free ones first, else at most one to steal)."""
    if not leases:
        return []
    free: list[Lease] = []
    held: dict[str, int] = {}
    for lease in leases:
        if lease.expired(now, expiration):
            free.append(lease)
        else:
            assert lease.owner is not None  # an unowned lease counts as expired
            held[lease.owner] = held.get(lease.owner, 0) + 1
    held.setdefault(me, 0)
    target = target_count(len(leases), len(held))
    needed = target - held[me]
    if needed <= 0:
        return []
    if free:
        return free[:needed]
    # The SDK picks the last of the owners tied for the most (`<=` while scanning them).
    busiest, most = me, 0
    for owner, count in held.items():
        if most <= count:
            busiest, most = owner, count
    if most > target - (1 if needed > 1 else 0):
        return [next(lease for lease in leases if lease.owner == busiest)]
    return []
