"""Tenants and write keys put straight into a host's embedded registry (`tenants.sqlite3`), as the CLI would."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from shared.adapters.tenants.embedded_registry import REGISTRY_FILE, EmbeddedTenantRegistry
from shared.domain.write_keys import MAX_LIVE_KEYS_PER_KIND, IssuedKey, KeyKind, Tenant, issue_key

__all__ = ["Registry", "bearer", "new_tenant_id"]

T = TypeVar("T")

_tenants = (f"tenant-{n}" for n in itertools.count(1))


def new_tenant_id() -> str:
    """A tenant of its own for each test."""
    return next(_tenants)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Registry:
    """The registry of a host's data folder, opened anew for each change (the host holds its own connection)."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / REGISTRY_FILE

    def tenant(self, tenant_id: str | None = None, *, events_per_minute: int | None = None) -> str:
        """Create an active tenant; its id."""
        chosen = tenant_id or new_tenant_id()
        self._run(lambda r: r.create_tenant(Tenant(chosen, "active", datetime.now(UTC), events_per_minute)))
        return chosen

    def key(self, tenant_id: str, kind: KeyKind = "server", origins: tuple[str, ...] = ()) -> IssuedKey:
        """A new live key of the tenant (the key itself is only in the returned value, as at creation)."""
        issued = issue_key(tenant_id, kind, created_at=datetime.now(UTC), origins=origins)
        self._run(lambda r: r.add_key(issued.record, max_live_per_kind=MAX_LIVE_KEYS_PER_KIND))
        return issued

    def revoke(self, key_id: str) -> None:
        self._run(lambda r: r.revoke_key(key_id, datetime.now(UTC)))

    def suspend(self, tenant_id: str) -> None:
        async def suspend(registry: EmbeddedTenantRegistry) -> None:
            tenant = await registry.get_tenant(tenant_id)
            assert tenant is not None
            await registry.update_tenant(replace(tenant, status="suspended"))

        self._run(suspend)

    def _run(self, action: Callable[[EmbeddedTenantRegistry], Awaitable[T]]) -> T:
        async def run() -> T:
            registry = EmbeddedTenantRegistry(self._path)
            try:
                return await action(registry)
            finally:
                await registry.close()

        return asyncio.run(run())
