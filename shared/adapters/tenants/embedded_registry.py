"""`TenantRegistry` in a SQLite file under the data folder, shared by every host process.

Each change runs in one `BEGIN IMMEDIATE` transaction (`SqliteWorker`), so the check that a
tenant has room for another live key and the insert cannot interleave with another
process's. Only key hashes are stored.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar, cast

import orjson

from shared.adapters.sqlite.worker import SqliteWorker
from shared.domain.write_keys import KeyKind, KeyStatus, Tenant, TenantStatus, WriteKey
from shared.ports import RegistryConflictError, TenantRegistryError

__all__ = ["REGISTRY_FILE", "EmbeddedTenantRegistry"]

T = TypeVar("T")

REGISTRY_FILE: Final = "tenants.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    tenant_id          TEXT PRIMARY KEY,
    status             TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    events_per_minute  INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS write_keys (
    key_id        TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (tenant_id),
    kind          TEXT NOT NULL,
    status        TEXT NOT NULL,
    key_hash      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    origins       TEXT NOT NULL,
    label         TEXT,
    last_used_at  TEXT,
    revoked_at    TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS write_keys_by_tenant ON write_keys (tenant_id, created_at);
CREATE TABLE IF NOT EXISTS health_probe (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    written_at TEXT NOT NULL
);
"""

_KEY_COLUMNS = "key_id, tenant_id, kind, status, key_hash, created_at, origins, label, last_used_at, revoked_at"


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _tenant(row: Sequence[Any]) -> Tenant:
    return Tenant(row[0], cast(TenantStatus, row[1]), datetime.fromisoformat(row[2]), row[3])


def _key(row: Sequence[Any]) -> WriteKey:
    return WriteKey(
        key_id=row[0],
        tenant_id=row[1],
        kind=cast(KeyKind, row[2]),
        status=cast(KeyStatus, row[3]),
        key_hash=row[4],
        created_at=datetime.fromisoformat(row[5]),
        origins=tuple(orjson.loads(row[6])),
        label=row[7],
        last_used_at=_parse_time(row[8]),
        revoked_at=_parse_time(row[9]),
    )


class EmbeddedTenantRegistry:
    """Tenants and key hashes in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._worker = SqliteWorker(path, lambda c: c.executescript(_SCHEMA), name="embedded-tenants")

    async def create_tenant(self, tenant: Tenant) -> None:
        def create(connection: sqlite3.Connection) -> None:
            try:
                connection.execute(
                    "INSERT INTO tenants (tenant_id, status, created_at, events_per_minute) VALUES (?, ?, ?, ?)",
                    (tenant.tenant_id, tenant.status, _time(tenant.created_at), tenant.events_per_minute),
                )
            except sqlite3.IntegrityError:
                raise RegistryConflictError(f"tenant {tenant.tenant_id!r} exists already") from None

        await self._run(create)

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        row = await self._run(
            lambda c: c.execute(
                "SELECT tenant_id, status, created_at, events_per_minute FROM tenants WHERE tenant_id = ?",
                (tenant_id,),
            ).fetchone()
        )
        return None if row is None else _tenant(row)

    async def list_tenants(self) -> Sequence[Tenant]:
        rows = await self._run(
            lambda c: c.execute(
                "SELECT tenant_id, status, created_at, events_per_minute FROM tenants ORDER BY tenant_id"
            ).fetchall()
        )
        return [_tenant(row) for row in rows]

    async def update_tenant(self, tenant: Tenant) -> None:
        def update(connection: sqlite3.Connection) -> None:
            changed = connection.execute(
                "UPDATE tenants SET status = ?, events_per_minute = ? WHERE tenant_id = ?",
                (tenant.status, tenant.events_per_minute, tenant.tenant_id),
            ).rowcount
            if not changed:
                raise RegistryConflictError(f"there is no tenant {tenant.tenant_id!r}")

        await self._run(update)

    async def add_key(self, key: WriteKey, *, max_live_per_kind: int) -> None:
        def add(connection: sqlite3.Connection) -> None:
            if connection.execute("SELECT 1 FROM tenants WHERE tenant_id = ?", (key.tenant_id,)).fetchone() is None:
                raise RegistryConflictError(f"there is no tenant {key.tenant_id!r}; create it first")
            (live,) = connection.execute(
                "SELECT count(*) FROM write_keys WHERE tenant_id = ? AND kind = ? AND status = 'active'",
                (key.tenant_id, key.kind),
            ).fetchone()
            if live >= max_live_per_kind:
                raise RegistryConflictError(
                    f"tenant {key.tenant_id!r} has {live} live {key.kind} keys, the most it may hold; revoke one first"
                )
            connection.execute(
                f"INSERT INTO write_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.key_id,
                    key.tenant_id,
                    key.kind,
                    key.status,
                    key.key_hash,
                    _time(key.created_at),
                    orjson.dumps(list(key.origins)).decode(),
                    key.label,
                    _time(key.last_used_at),
                    _time(key.revoked_at),
                ),
            )

        await self._run(add)

    async def get_key(self, key_id: str) -> WriteKey | None:
        row = await self._run(
            lambda c: c.execute(f"SELECT {_KEY_COLUMNS} FROM write_keys WHERE key_id = ?", (key_id,)).fetchone()
        )
        return None if row is None else _key(row)

    async def list_keys(self, tenant_id: str) -> Sequence[WriteKey]:
        rows = await self._run(
            lambda c: c.execute(
                f"SELECT {_KEY_COLUMNS} FROM write_keys WHERE tenant_id = ? ORDER BY created_at, key_id",
                (tenant_id,),
            ).fetchall()
        )
        return [_key(row) for row in rows]

    async def revoke_key(self, key_id: str, at: datetime) -> WriteKey:
        def revoke(connection: sqlite3.Connection) -> WriteKey:
            connection.execute(
                "UPDATE write_keys SET status = 'revoked', revoked_at = coalesce(revoked_at, ?) WHERE key_id = ?",
                (_time(at), key_id),
            )
            row = connection.execute(f"SELECT {_KEY_COLUMNS} FROM write_keys WHERE key_id = ?", (key_id,)).fetchone()
            if row is None:
                raise RegistryConflictError(f"there is no key {key_id!r}")
            return _key(row)

        return await self._run(revoke)

    async def touch_key(self, key_id: str, at: datetime) -> None:
        # ISO-8601 UTC strings of one format order as the times they name.
        stamp = _time(at)
        await self._run(
            lambda c: c.execute(
                "UPDATE write_keys SET last_used_at = ? "
                "WHERE key_id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                (stamp, key_id, stamp),
            )
        )

    async def check(self) -> None:
        """Commit a write: a registry that cannot take writes cannot create or revoke keys."""
        stamp = _time(datetime.now(UTC))
        await self._run(
            lambda c: c.execute("INSERT OR REPLACE INTO health_probe (id, written_at) VALUES (1, ?)", (stamp,))
        )

    async def close(self) -> None:
        self._worker.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._worker.run(fn)
        except (sqlite3.Error, OSError) as exc:
            raise TenantRegistryError(f"the embedded tenant registry failed: {exc}") from exc
