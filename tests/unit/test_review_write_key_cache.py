"""The revocation bound counts from when the registry was read, not from when a slow read returned (found in review)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.adapters.tenants.embedded_registry import EmbeddedTenantRegistry
from shared.write_key_auth import KeyRejectedError, WriteKeyAuthenticator
from tests.unit.test_write_key_auth import CACHE_SECONDS, NOW, Clock, tenant_with_key

SLOW_TENANT_READ_SECONDS = 5.0


class SlowTenantRegistry(EmbeddedTenantRegistry):
    """Reads the key at once, then takes `SLOW_TENANT_READ_SECONDS` for the tenant (a throttled table, SDK retries)."""

    def __init__(self, path: Path, clock: Clock) -> None:
        super().__init__(path)
        self.clock = clock
        self.slow = False
        self.revoke_during_read: str | None = None

    async def get_tenant(self, tenant_id: str):  # type: ignore[no-untyped-def]
        if self.revoke_during_read is not None:
            # An operator revokes the key just after its record was read, while the tenant read is slow.
            await self.revoke_key(self.revoke_during_read, NOW)
            self.revoke_during_read = None
        if self.slow:
            self.clock.now += SLOW_TENANT_READ_SECONDS
        return await super().get_tenant(tenant_id)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def registry(tmp_path: Path, clock: Clock) -> AsyncIterator[SlowTenantRegistry]:
    store = SlowTenantRegistry(tmp_path / "tenants.sqlite3", clock)
    yield store
    await store.close()


async def test_a_key_revoked_right_after_it_was_read_is_refused_within_the_cache_period_of_that_read(
    registry: SlowTenantRegistry, clock: Clock
) -> None:
    issued = await tenant_with_key(registry)  # type: ignore[arg-type]
    authenticator = WriteKeyAuthenticator(registry, cache_seconds=CACHE_SECONDS, clock=clock, wall_clock=lambda: NOW)
    registry.slow = True
    registry.revoke_during_read = issued.record.key_id
    revoked_at = clock.now
    await authenticator.authenticate(issued.key)  # key read and revoked at `revoked_at`; the tenant read ends 5 s later
    registry.slow = False

    clock.now = revoked_at + CACHE_SECONDS + 1.0  # past the stated bound, counted from the revocation
    with pytest.raises(KeyRejectedError) as caught:
        await authenticator.authenticate(issued.key)
    await authenticator.close()
    assert caught.value.reason == "key_revoked"


async def test_guessing_keys_costs_no_registry_reads_as_docs_tradeoffs_says(tmp_path: Path) -> None:
    """docs/tradeoffs.md, "Write keys": "unknown keys are cached too, so guessing costs no registry reads".

    The cache is by key id, and every guess has a fresh random id: each guess is a registry read.
    """
    from shared.domain.write_keys import issue_key
    from tests.unit.test_write_key_auth import CountingRegistry

    registry = CountingRegistry(tmp_path / "tenants.sqlite3")
    authenticator = WriteKeyAuthenticator(registry, cache_seconds=CACHE_SECONDS, clock=Clock(), wall_clock=lambda: NOW)
    try:
        for _ in range(100):
            with pytest.raises(KeyRejectedError):
                await authenticator.authenticate(issue_key("acme", "server", created_at=NOW).key)
        reads = registry.key_reads
    finally:
        await authenticator.close()
        await registry.close()
    assert reads <= 1, f"100 guessed keys cost {reads} registry reads"
