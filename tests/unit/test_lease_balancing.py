"""The equal-partitions strategy's arithmetic: which leases an instance takes, case by case."""

from __future__ import annotations

import pytest

from cloudscale_local.host.lease_balancing import leases_to_take, target_count
from cloudscale_local.host.leases import Lease

NOW = 10_000.0
EXPIRATION = 60.0


def lease(feed_range: int, owner: str | None, age: float = 1.0) -> Lease:
    """A lease of range `feed_range` last written `age` seconds ago."""
    return Lease("f", feed_range, owner, 0, NOW - age, 1)


def owners(*names: str | None) -> list[Lease]:
    """Leases 0, 1, ... owned by `names` in turn, each written a second ago (None: unowned)."""
    return [lease(number, name) for number, name in enumerate(names)]


@pytest.mark.parametrize(
    ("leases", "owners_", "target"),
    [(4, 1, 4), (4, 2, 2), (4, 3, 2), (4, 4, 1), (4, 5, 1), (5, 2, 3), (1, 1, 1), (8, 3, 3)],
)
def test_the_target_is_the_ceiling_of_leases_per_live_instance_and_at_least_one(
    leases: int, owners_: int, target: int
) -> None:
    assert target_count(leases, owners_) == target


@pytest.mark.parametrize(
    ("leases", "taken"),
    [
        pytest.param([], [], id="no leases: nothing"),
        pytest.param(owners(None, None, None, None), [0, 1, 2, 3], id="alone: every free lease"),
        pytest.param(owners("a", "a", "a", "a"), [0], id="a new instance steals one per cycle, not two"),
        pytest.param(owners("a", "a", "a", "me"), [0], id="one short of target: steal from one above it"),
        pytest.param(owners("a", "a", "me", "me"), [], id="balanced: nothing"),
        pytest.param(owners("a", "a", "b", "me"), [], id="nobody above target: nothing to steal"),
        pytest.param(owners("me", "me", "me", "me"), [], id="holding all, alone: nothing"),
        pytest.param(owners("a", None, None, None), [1, 2], id="free leases first, only up to target"),
        pytest.param(owners("a", "b", "c", "d", "me")[:1], [], id="more instances than leases: idle"),
        pytest.param(owners("a", "a", "a", "a", "a"), [0], id="five leases, target 3: still one per cycle"),
        pytest.param(owners("a", "a", "b", "b", "b", "b"), [2], id="steals from the busiest"),
    ],
)
def test_which_leases_an_instance_takes(leases: list[Lease], taken: list[int]) -> None:
    assert [chosen.feed_range for chosen in leases_to_take(leases, "me", NOW, EXPIRATION)] == taken


def test_expired_leases_are_free_and_their_owner_no_longer_counts() -> None:
    # GIVEN b's two leases not renewed for longer than the expiration, and a's two alive
    leases = [lease(0, "a"), lease(1, "a"), lease(2, "b", age=EXPIRATION + 1), lease(3, "b", age=EXPIRATION + 1)]

    # THEN b is no longer an instance: the target is 2 (a and me), and b's leases are taken
    assert [chosen.feed_range for chosen in leases_to_take(leases, "me", NOW, EXPIRATION)] == [2, 3]


def test_a_lease_written_exactly_the_expiration_ago_is_not_yet_expired() -> None:
    leases = [lease(0, "a", age=EXPIRATION), lease(1, "a", age=EXPIRATION)]

    # Expired means timestamp + expiration < now, strictly: this is one to steal, not to take.
    assert not leases[0].expired(NOW, EXPIRATION)
    assert [chosen.feed_range for chosen in leases_to_take(leases, "me", NOW, EXPIRATION)] == [0]
