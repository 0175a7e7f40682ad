"""`SuppressionList` over the real embedded privacy store: the cache bound, `forget`, failing
closed, and what it costs a tenant with no tombstones. A stepped clock stands for time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.privacy.embedded_privacy import PRIVACY_FILE, EmbeddedPrivacyStore
from shared.domain.privacy import Suppression, subject_hash
from shared.ports import PrivacyStoreError
from shared.suppression import SuppressionList

SECRET = b"k" * 32
T0 = datetime(2026, 11, 27, 12, tzinfo=UTC)
CACHE_SECONDS = 10.0


class SteppedClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class CountingStore(EmbeddedPrivacyStore):
    """The real store, counting how often each tenant's tombstones are read."""

    reads: list[str]

    async def suppressions(self, tenant_id: str) -> Sequence[Suppression]:
        self.reads.append(tenant_id)
        return await super().suppressions(tenant_id)


class Secret:
    """The deployment secret, counting reads (a tenant without tombstones needs none)."""

    def __init__(self) -> None:
        self.reads = 0

    async def __call__(self) -> bytes:
        self.reads += 1
        return SECRET


class Harness:
    def __init__(self, path: Path) -> None:
        self.store = CountingStore(path)
        self.store.reads = []
        self.writer = EmbeddedPrivacyStore(path)  # another instance (the erasure runner) writes
        self.clock = SteppedClock()
        self.secret = Secret()
        self.suppressions = SuppressionList(self.store, self.secret, cache_seconds=CACHE_SECONDS, clock=self.clock)

    async def erase(self, user: str, *, tenant: str = "acme", mode: str = "suppress") -> None:
        await self.writer.save_suppression(
            Suppression(tenant, subject_hash(SECRET, tenant, "userId", user), "userId", T0, mode=mode)  # type: ignore[arg-type]
        )

    async def drops(self, user: str | None, *, tenant: str = "acme", received_at: datetime = T0) -> bool:
        return await self.suppressions.drops(tenant, user, None, received_at)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    opened = Harness(tmp_path / PRIVACY_FILE)
    yield opened
    await opened.store.close()
    await opened.writer.close()


async def test_a_tombstone_is_seen_once_the_cached_copy_is_older_than_the_bound(harness: Harness) -> None:
    assert not await harness.drops("u-1")  # reads the store: no tombstones yet
    await harness.erase("u-1")

    harness.clock.now += CACHE_SECONDS - 0.001
    assert not await harness.drops("u-1")  # within the bound: the copy is trusted
    harness.clock.now += 0.001
    assert await harness.drops("u-1")  # at the bound: read again
    assert not await harness.drops("u-2")
    assert harness.store.reads == ["acme", "acme"]


async def test_each_tenant_is_cached_on_its_own_and_forget_reads_at_once(harness: Harness) -> None:
    assert not await harness.drops("u-1")
    assert not await harness.drops("u-1", tenant="other")
    await harness.erase("u-1")

    harness.suppressions.forget("acme")

    assert await harness.drops("u-1")
    assert not await harness.drops("u-1", tenant="other")  # the same id in another tenant
    assert harness.store.reads == ["acme", "other", "acme"]


async def test_an_event_without_identifiers_reads_nothing(harness: Harness) -> None:
    assert not await harness.drops(None)
    assert harness.store.reads == []


async def test_a_tenant_without_tombstones_costs_no_hash_and_no_secret(harness: Harness) -> None:
    await harness.erase("u-1", tenant="other")
    for n in range(100):
        assert not await harness.drops(f"u-{n}")
    assert harness.secret.reads == 0
    assert harness.store.reads == ["acme"]

    assert await harness.drops("u-1", tenant="other")
    assert harness.secret.reads == 1


async def test_a_store_down_within_the_bound_is_not_noticed(harness: Harness) -> None:
    await harness.erase("u-1")
    assert await harness.drops("u-1")
    await harness.store.close()  # down from now on

    harness.clock.now += CACHE_SECONDS / 2
    assert await harness.drops("u-1")
    assert not await harness.drops("u-2")


async def test_a_store_down_after_the_copy_went_stale_fails_closed(harness: Harness) -> None:
    await harness.erase("u-1")
    assert await harness.drops("u-1")
    await harness.store.close()

    harness.clock.now += CACHE_SECONDS
    with pytest.raises(PrivacyStoreError):
        await harness.drops("u-2")  # not even another user passes on old information
    with pytest.raises(PrivacyStoreError):
        await harness.drops("u-1")


async def test_delete_mode_drops_only_what_was_received_before_the_erasure(harness: Harness) -> None:
    await harness.erase("u-1", mode="delete")

    assert await harness.drops("u-1", received_at=T0 - timedelta(seconds=1))
    assert not await harness.drops("u-1", received_at=T0)
    assert not await harness.drops("u-1", received_at=T0 + timedelta(days=1))
