"""The benchmark's producer: a tenant and a server key in a scenario's fresh data folder.

Written straight into the embedded registry before the host starts, as `cloudscale tenants
create` and `cloudscale keys create` would, so every keyed scenario pays for authentication as
a producer in production does (a registry read per key per cache period, a hash and a constant-
time comparison per request).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from shared.adapters.tenants.embedded_registry import REGISTRY_FILE, EmbeddedTenantRegistry
from shared.domain.write_keys import MAX_LIVE_KEYS_PER_KIND, Tenant, issue_key

__all__ = ["BENCH_TENANT", "create_bench_key"]

BENCH_TENANT = "bench"


def create_bench_key(data_dir: Path, tenant_id: str = BENCH_TENANT) -> str:
    """Create `tenant_id` with a server key in `data_dir`'s registry; the key (kept in memory only)."""

    data_dir.mkdir(parents=True, exist_ok=True)

    async def create() -> str:
        registry = EmbeddedTenantRegistry(data_dir / REGISTRY_FILE)
        try:
            now = datetime.now(UTC)
            await registry.create_tenant(Tenant(tenant_id, "active", now))
            issued = issue_key(tenant_id, "server", created_at=now, label="benchmark")
            await registry.add_key(issued.record, max_live_per_kind=MAX_LIVE_KEYS_PER_KIND)
            return issued.key
        finally:
            await registry.close()

    return asyncio.run(create())
