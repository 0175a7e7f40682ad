"""Presented write keys checked against a real (SQLite) registry, with the per-instance cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.adapters.tenants.embedded_registry import EmbeddedTenantRegistry
from shared.domain.write_keys import IssuedKey, Tenant, issue_key
from shared.ports import TenantRegistryError
from shared.write_key_auth import KeyRejectedError, WriteKeyAuthenticator

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CACHE_SECONDS = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingRegistry(EmbeddedTenantRegistry):
    """The SQLite registry, counting key reads, and able to fail like a registry that is down."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.key_reads = 0
        self.down = False

    async def get_key(self, key_id: str):  # type: ignore[no-untyped-def]
        self.key_reads += 1
        if self.down:
            raise TenantRegistryError("the registry is down")
        return await super().get_key(key_id)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[CountingRegistry]:
    store = CountingRegistry(tmp_path / "tenants.sqlite3")
    yield store
    await store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def authenticator(registry: CountingRegistry, clock: Clock) -> AsyncIterator[WriteKeyAuthenticator]:
    checker = WriteKeyAuthenticator(registry, cache_seconds=CACHE_SECONDS, clock=clock, wall_clock=lambda: NOW)
    yield checker
    await checker.close()


async def tenant_with_key(registry: CountingRegistry, tenant_id: str = "acme", **options: object) -> IssuedKey:
    if await registry.get_tenant(tenant_id) is None:
        await registry.create_tenant(Tenant(tenant_id, "active", NOW, options.pop("events_per_minute", None)))  # type: ignore[arg-type]
    issued = issue_key(tenant_id, options.pop("kind", "server"), created_at=NOW, **options)  # type: ignore[arg-type]
    await registry.add_key(issued.record, max_live_per_kind=2)
    return issued


async def rejection(authenticator: WriteKeyAuthenticator, presented: str | None) -> KeyRejectedError:
    with pytest.raises(KeyRejectedError) as caught:
        await authenticator.authenticate(presented)
    return caught.value


async def test_a_live_key_proves_its_tenant_and_quota(
    registry: CountingRegistry, authenticator: WriteKeyAuthenticator
) -> None:
    issued = await tenant_with_key(registry, events_per_minute=600)

    producer = await authenticator.authenticate(issued.key)

    assert (producer.tenant_id, producer.key_id, producer.kind) == ("acme", issued.record.key_id, "server")
    assert producer.events_per_minute == 600


@pytest.mark.parametrize("presented", [None, ""])
async def test_no_key_is_a_401_asking_for_one(authenticator: WriteKeyAuthenticator, presented: str | None) -> None:
    rejected = await rejection(authenticator, presented)

    assert (rejected.status, rejected.reason) == (401, "missing_key")


async def test_an_unknown_key_a_wrong_secret_and_a_wrong_kind_all_get_the_same_401(
    registry: CountingRegistry, authenticator: WriteKeyAuthenticator
) -> None:
    issued = await tenant_with_key(registry)
    wrong_secret = issued.key[:-4] + ("aaaa" if not issued.key.endswith("aaaa") else "bbbb")
    wrong_kind = issued.key.replace("cs_sk_", "cs_bk_", 1)
    unknown = issue_key("acme", "server", created_at=NOW).key

    answers = [await rejection(authenticator, key) for key in (wrong_secret, wrong_kind, unknown, "not-a-key")]

    assert {(a.status, a.reason, a.message) for a in answers} == {(401, "invalid_key", "the write key is not valid")}


async def test_a_revoked_key_is_refused_with_403_once_the_cache_period_has_passed(
    registry: CountingRegistry, authenticator: WriteKeyAuthenticator, clock: Clock
) -> None:
    issued = await tenant_with_key(registry)
    await authenticator.authenticate(issued.key)

    await registry.revoke_key(issued.record.key_id, NOW)
    clock.now += CACHE_SECONDS - 0.1
    await authenticator.authenticate(issued.key)  # still cached: the bound is the cache period
    clock.now += 0.2
    rejected = await rejection(authenticator, issued.key)

    assert (rejected.status, rejected.reason) == (403, "key_revoked")


async def test_a_suspended_tenant_is_refused_with_403_within_the_cache_period(
    registry: CountingRegistry, authenticator: WriteKeyAuthenticator, clock: Clock
) -> None:
    issued = await tenant_with_key(registry)
    await authenticator.authenticate(issued.key)

    await registry.update_tenant(Tenant("acme", "suspended", NOW))
    clock.now += CACHE_SECONDS + 0.1
    rejected = await rejection(authenticator, issued.key)

    assert (rejected.status, rejected.reason) == (403, "tenant_suspended")


async def test_two_live_keys_of_a_tenant_both_work_so_a_key_can_be_rotated(
    registry: CountingRegistry, authenticator: WriteKeyAuthenticator, clock: Clock
) -> None:
    old = await tenant_with_key(registry)
    new = await tenant_with_key(registry)

    assert (await authenticator.authenticate(old.key)).tenant_id == "acme"
    assert (await authenticator.authenticate(new.key)).tenant_id == "acme"
    await registry.revoke_key(old.record.key_id, NOW)
    clock.now += CACHE_SECONDS + 0.1
    assert (await rejection(authenticator, old.key)).reason == "key_revoked"
    assert (await authenticator.authenticate(new.key)).tenant_id == "acme"


async def test_repeated_keys_known_or_not_read_the_registry_once_per_cache_period(
    registry: CountingRegistry, authenticator: WriteKeyAuthenticator, clock: Clock
) -> None:
    issued = await tenant_with_key(registry)
    unknown = issue_key("acme", "server", created_at=NOW).key

    for _ in range(5):
        await authenticator.authenticate(issued.key)
        await rejection(authenticator, unknown)
    assert registry.key_reads == 2
    clock.now += CACHE_SECONDS + 0.1
    await authenticator.authenticate(issued.key)
    assert registry.key_reads == 3


async def test_a_registry_outage_fails_an_uncached_key_but_not_a_cached_one(
    registry: CountingRegistry, authenticator: WriteKeyAuthenticator
) -> None:
    cached = await tenant_with_key(registry)
    uncached = await tenant_with_key(registry)
    await authenticator.authenticate(cached.key)

    registry.down = True

    assert (await authenticator.authenticate(cached.key)).tenant_id == "acme"
    with pytest.raises(TenantRegistryError):
        await authenticator.authenticate(uncached.key)


async def test_use_is_recorded_as_the_key_last_used_time(
    registry: CountingRegistry, authenticator: WriteKeyAuthenticator
) -> None:
    issued = await tenant_with_key(registry)

    await authenticator.authenticate(issued.key)
    await authenticator.close()  # waits for the background write

    stored = await registry.get_key(issued.record.key_id)
    assert stored is not None
    assert stored.last_used_at == NOW


async def test_a_browser_key_carries_its_origins_for_the_origin_check(
    registry: CountingRegistry, authenticator: WriteKeyAuthenticator
) -> None:
    issued = await tenant_with_key(registry, kind="browser", origins=("https://shop.example",))

    producer = await authenticator.authenticate(issued.key)

    assert producer.kind == "browser"
    assert producer.allows_origin("https://shop.example")
    assert not producer.allows_origin("https://elsewhere.example")
    assert not producer.allows_origin(None)


class SlowTenantRegistry(CountingRegistry):
    """Reads a key at once, then takes `SLOW_TENANT_READ_SECONDS` for its tenant (a throttled table, SDK retries)."""

    def __init__(self, path: Path, clock: Clock) -> None:
        super().__init__(path)
        self.clock = clock
        self.revoke_during_read: str | None = None

    async def get_tenant(self, tenant_id: str):  # type: ignore[no-untyped-def]
        if self.revoke_during_read is not None:
            # An operator revokes the key just after its record was read, while the tenant read is slow.
            await self.revoke_key(self.revoke_during_read, NOW)
            self.revoke_during_read = None
            self.clock.now += SLOW_TENANT_READ_SECONDS
        return await super().get_tenant(tenant_id)


SLOW_TENANT_READ_SECONDS = 5.0


async def test_a_key_revoked_during_a_slow_read_is_refused_within_the_cache_period_of_the_reads_start(
    tmp_path: Path, clock: Clock
) -> None:
    registry = SlowTenantRegistry(tmp_path / "slow.sqlite3", clock)
    authenticator = WriteKeyAuthenticator(registry, cache_seconds=CACHE_SECONDS, clock=clock, wall_clock=lambda: NOW)
    try:
        issued = await tenant_with_key(registry)
        registry.revoke_during_read = issued.record.key_id
        revoked_at = clock.now
        await authenticator.authenticate(issued.key)  # the key read, then revoked; the tenant read ends 5 s later

        clock.now = revoked_at + CACHE_SECONDS + 0.1  # past the stated bound, counted from the revocation
        refused = await rejection(authenticator, issued.key)
    finally:
        await authenticator.close()
        await registry.close()
    assert refused.reason == "key_revoked"


async def test_each_guessed_key_costs_one_registry_read_and_never_evicts_a_known_key(
    registry: CountingRegistry, clock: Clock
) -> None:
    # GIVEN a cache of 10 known keys and 5 unknown ones, and a key in use
    authenticator = WriteKeyAuthenticator(
        registry, cache_seconds=CACHE_SECONDS, max_entries=10, max_unknown=5, clock=clock, wall_clock=lambda: NOW
    )
    issued = await tenant_with_key(registry)
    try:
        await authenticator.authenticate(issued.key)
        reads = registry.key_reads

        # WHEN 100 random keys are guessed
        for _ in range(100):
            await rejection(authenticator, issue_key("acme", "server", created_at=NOW).key)
        guessed_reads = registry.key_reads - reads

        # THEN each guess read the registry once (a missing row), and the key in use is still cached
        await authenticator.authenticate(issued.key)
    finally:
        await authenticator.close()
    assert guessed_reads == 100
    assert registry.key_reads == reads + 100
