"""Change-feed leases with two instances on one real lease file: acquire, renew, expire, steal.

Both stores share one clock that the test moves, so expiry is exact and takes no waiting.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudscale_local.host.lease_balancing import leases_to_take
from cloudscale_local.host.leases import Lease, LeaseLostError, LeaseStore

NAME = "events_to_analytics"
EXPIRATION = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def two_stores(tmp_path: Path, clock: Clock) -> Iterator[tuple[LeaseStore, LeaseStore]]:
    """Instance a's and instance b's view of one lease file."""
    a, b = LeaseStore(tmp_path / "leases.sqlite3", clock=clock), LeaseStore(tmp_path / "leases.sqlite3", clock=clock)
    yield a, b
    a.close()
    b.close()


async def balance(store: LeaseStore, me: str) -> list[Lease]:
    """One balancing cycle of instance `me`: what it took."""
    taken = []
    for lease in leases_to_take(await store.read_all(NAME), me, store.now(), EXPIRATION):
        with contextlib.suppress(LeaseLostError):
            taken.append(await store.acquire(lease, me))
    return taken


def owners(leases: list[Lease]) -> list[str | None]:
    return [lease.owner for lease in leases]


async def test_the_first_instance_takes_every_free_lease_and_a_second_finds_none_free(
    two_stores: tuple[LeaseStore, LeaseStore],
) -> None:
    a, b = two_stores
    await a.ensure(NAME, range(4))
    await b.ensure(NAME, range(4))  # a second ensure creates nothing

    stale = await b.read_all(NAME)  # b read them while they were free
    assert owners(stale) == [None] * 4
    assert [lease.feed_range for lease in await balance(a, "a")] == [0, 1, 2, 3]

    # b's acquire names what it read (no owner): a took them since, so b lost every race
    for lease in stale:
        with pytest.raises(LeaseLostError):
            await b.acquire(lease, "b")
    assert owners(await b.read_all(NAME)) == ["a"] * 4


async def test_a_second_instance_steals_one_lease_per_cycle_until_both_hold_the_target(
    two_stores: tuple[LeaseStore, LeaseStore],
) -> None:
    a, b = two_stores
    await a.ensure(NAME, range(4))
    await balance(a, "a")

    first = await balance(b, "b")
    second = await balance(b, "b")
    third = await balance(b, "b")

    assert [len(first), len(second), len(third)] == [1, 1, 0]
    assert sorted(owners(await a.read_all(NAME)), key=str) == ["a", "a", "b", "b"]
    assert await balance(a, "a") == []  # a is at target too


async def test_a_renewed_lease_stays_and_an_unrenewed_one_expires_to_the_other_instance(
    two_stores: tuple[LeaseStore, LeaseStore], clock: Clock
) -> None:
    a, b = two_stores
    await a.ensure(NAME, range(2))
    held = await balance(a, "a")

    # a renews lease 0 every 17 s; lease 1 it stops renewing
    for _ in range(4):
        clock.now += 17
        held[0] = await a.renew(held[0])
    assert held[0].renewed_at == clock.now
    assert held[0].version > 2

    # b (target 1, nothing free) would steal; past the expiration lease 1 is free instead
    [taken] = await balance(b, "b")
    assert taken.feed_range == 1
    assert clock.now - held[1].renewed_at > EXPIRATION
    assert owners(await b.read_all(NAME)) == ["a", "b"]

    # a finds out at its next renewal, and stops
    with pytest.raises(LeaseLostError):
        await a.renew(held[1])


async def test_a_lost_lease_is_not_checkpointed_over_the_new_owner(
    two_stores: tuple[LeaseStore, LeaseStore], clock: Clock
) -> None:
    a, b = two_stores
    await a.ensure(NAME, range(1))
    [lease] = await balance(a, "a")
    lease = await a.checkpoint(lease, 10)

    # WHEN a stops renewing (a long batch), its lease expires and b takes it, from checkpoint 10
    clock.now += EXPIRATION + 1
    [taken] = await balance(b, "b")
    assert taken.checkpoint == 10
    taken = await b.checkpoint(taken, 15)

    # THEN a's checkpoint of the batch it was working on is refused, and b's stands
    with pytest.raises(LeaseLostError):
        await a.checkpoint(lease, 12)
    with pytest.raises(LeaseLostError):
        await a.release(lease)
    assert await b.checkpoints(NAME) == {0: 15}
    assert owners(await b.read_all(NAME)) == ["b"]


async def test_a_released_lease_is_taken_at_the_next_cycle_without_waiting_for_expiry(
    two_stores: tuple[LeaseStore, LeaseStore],
) -> None:
    a, b = two_stores
    await a.ensure(NAME, range(4))
    await balance(a, "a")
    await balance(b, "b")
    await balance(b, "b")
    mine = [lease for lease in await a.read_all(NAME) if lease.owner == "a"]

    for lease in mine:
        await a.release(lease)

    assert sorted(lease.feed_range for lease in await balance(b, "b")) == sorted(lease.feed_range for lease in mine)
    assert owners(await b.read_all(NAME)) == ["b"] * 4


async def test_a_write_with_a_stale_version_goes_ahead_while_the_owner_is_unchanged(
    two_stores: tuple[LeaseStore, LeaseStore],
) -> None:
    # The processor's renewer and its checkpoints write the same lease: each names the version
    # it knows, and a newer one written by the same owner is no conflict (the 412 re-read).
    a, _ = two_stores
    await a.ensure(NAME, range(1))
    [lease] = await balance(a, "a")
    checkpointed = await a.checkpoint(lease, 7)
    renewed = await a.renew(lease)  # names the version before the checkpoint

    assert renewed.version == checkpointed.version + 1
    assert renewed.checkpoint == 7
    # A checkpoint never moves backwards.
    assert (await a.checkpoint(renewed, 3)).checkpoint == 7


async def test_an_old_single_checkpoint_starts_every_range(tmp_path: Path, clock: Clock) -> None:
    # GIVEN a lease file of the earlier format: one checkpoint per function
    path = tmp_path / "leases.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute(
            "CREATE TABLE leases (name TEXT PRIMARY KEY, sequence INTEGER NOT NULL,"
            " updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
        )
        connection.execute("INSERT INTO leases (name, sequence) VALUES (?, 42), ('other', 7)", (NAME,))

    # WHEN it is opened and the function's leases are created
    store = LeaseStore(path, clock=clock)
    try:
        await store.ensure(NAME, range(4))
        # THEN every range starts where the function had got to, unowned
        assert await store.checkpoints(NAME) == {0: 42, 1: 42, 2: 42, 3: 42}
        assert owners(await store.read_all(NAME)) == [None] * 4
    finally:
        store.close()
