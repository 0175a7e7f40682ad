"""`cloudscale tenants` and `cloudscale keys`: the tenants that may send events, and their write keys.

Reads the same settings as `cloudscale run`: the embedded registry (`tenants.sqlite3` under
`CLOUDSCALE_DATA_DIR`), or with `CLOUDSCALE_BACKEND=azure` the registry table in the rate-limit
storage account (`shared.adapters.tenants.tables_registry`).

A key is printed once, when it is made, on stdout alone on its line (`KEY=$(cloudscale keys
create --tenant acme --quiet)`); the registry keeps only its hash, so nothing can show it again.
Everything else (ids, kinds, origins, times) may be listed freely: none of it rebuilds a key.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar, cast

import click

from cloudscale_local.cli.backend import load_cli_settings, run_with_container
from shared.domain.events import TENANT_ID_PATTERN
from shared.domain.ratelimit import MIN_TENANT_EVENTS_PER_MINUTE
from shared.domain.write_keys import (
    MAX_LIVE_KEYS_PER_KIND,
    KeyKind,
    Tenant,
    WriteKey,
    issue_key,
    parse_key,
)
from shared.ports import RegistryConflictError, TenantRegistry
from shared.settings import Settings

__all__ = ["keys", "tenants"]

T = TypeVar("T")

_KEY_ID = re.compile(r"[a-z2-7]{16}")


def _run(settings: Settings, action: Callable[[TenantRegistry], Awaitable[T]]) -> T:
    """Run `action` on the registry the container chooses from `settings`; failures are one-line errors."""
    return run_with_container(settings, lambda container: action(container.tenant_registry))


def _tenant_id(value: str) -> str:
    if re.fullmatch(TENANT_ID_PATTERN, value) is None:
        raise click.ClickException(
            f"{value!r} is not a tenant id: 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit."
        )
    return value


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quota(tenant: Tenant, settings: Settings) -> str:
    if tenant.events_per_minute is None:
        return f"{settings.tenant_events_per_minute} events/min (default)"
    return f"{tenant.events_per_minute} events/min"


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as lines of left-aligned columns, two spaces apart (whole lines: fit for grep)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def _key_lines(keys: Sequence[WriteKey]) -> list[str]:
    header = ("ID", "KIND", "STATUS", "CREATED", "LAST USED", "ORIGINS", "LABEL")
    rows = [
        (
            key.key_id,
            key.kind,
            key.status if key.revoked_at is None else f"revoked {_when(key.revoked_at)}",
            _when(key.created_at),
            _when(key.last_used_at),
            ",".join(key.origins) or "-",
            key.label or "-",
        )
        for key in keys
    ]
    return _columns([header, *rows])


async def _existing_tenant(registry: TenantRegistry, tenant_id: str) -> Tenant:
    tenant = await registry.get_tenant(tenant_id)
    if tenant is None:
        raise RegistryConflictError(f"there is no tenant {tenant_id!r} (`cloudscale tenants list` shows them)")
    return tenant


@click.group()
def tenants() -> None:
    """Create, list and suspend tenants: who may send events, and how many a minute."""


@tenants.command("create")
@click.argument("tenant_id", metavar="TENANT")
@click.option(
    "--events-per-minute",
    type=click.IntRange(min=MIN_TENANT_EVENTS_PER_MINUTE),
    help=f"Its own quota, at least {MIN_TENANT_EVENTS_PER_MINUTE} (one full batch a minute; "
    "default: CLOUDSCALE_TENANT_EVENTS_PER_MINUTE).",
)
def create_tenant(tenant_id: str, events_per_minute: int | None) -> None:
    """Create a tenant. It can send nothing until it has a key (`cloudscale keys create`)."""
    settings = load_cli_settings()
    tenant = Tenant(_tenant_id(tenant_id), "active", datetime.now(UTC), events_per_minute)
    _run(settings, lambda registry: registry.create_tenant(tenant))
    click.echo(f"Created tenant {tenant_id!r}, quota {_quota(tenant, settings)}.")
    click.echo(f"Give it a key: cloudscale keys create --tenant {tenant_id}")


@tenants.command("list")
def list_tenants() -> None:
    """List the tenants, with their status, quota and live keys."""
    settings = load_cli_settings()

    async def read(registry: TenantRegistry) -> list[tuple[Tenant, Sequence[WriteKey]]]:
        return [(tenant, await registry.list_keys(tenant.tenant_id)) for tenant in await registry.list_tenants()]

    found = _run(settings, read)
    if not found:
        click.echo("There are no tenants yet: cloudscale tenants create TENANT")
        return
    header = ("TENANT", "STATUS", "QUOTA", "LIVE KEYS", "CREATED")
    rows = [
        (
            tenant.tenant_id,
            tenant.status,
            _quota(tenant, settings),
            ", ".join(
                f"{sum(1 for key in tenant_keys if key.active and key.kind == kind)} {kind}"
                for kind in ("server", "browser")
            ),
            _when(tenant.created_at),
        )
        for tenant, tenant_keys in found
    ]
    for line in _columns([header, *rows]):
        click.echo(line)


@tenants.command("show")
@click.argument("tenant_id", metavar="TENANT")
def show_tenant(tenant_id: str) -> None:
    """Show a tenant: its status, quota and keys (never the keys themselves)."""
    settings = load_cli_settings()
    _tenant_id(tenant_id)

    async def read(registry: TenantRegistry) -> tuple[Tenant, Sequence[WriteKey]]:
        return await _existing_tenant(registry, tenant_id), await registry.list_keys(tenant_id)

    tenant, tenant_keys = _run(settings, read)
    click.echo(f"Tenant:   {tenant.tenant_id}")
    click.echo(f"Status:   {tenant.status}")
    click.echo(f"Quota:    {_quota(tenant, settings)}")
    click.echo(f"Created:  {_when(tenant.created_at)}")
    if not tenant_keys:
        click.echo(f"Keys:     none (cloudscale keys create --tenant {tenant_id})")
        return
    click.echo("Keys:")
    for line in _key_lines(tenant_keys):
        click.echo(f"  {line}")


def _change_tenant(tenant_id: str, change: Callable[[Tenant], Tenant]) -> tuple[Settings, Tenant]:
    settings = load_cli_settings()
    _tenant_id(tenant_id)

    async def update(registry: TenantRegistry) -> Tenant:
        changed = change(await _existing_tenant(registry, tenant_id))
        await registry.update_tenant(changed)
        return changed

    return settings, _run(settings, update)


@tenants.command("suspend")
@click.argument("tenant_id", metavar="TENANT")
def suspend_tenant(tenant_id: str) -> None:
    """Refuse every event of a tenant (403), whichever key it comes with, until it is resumed."""
    settings, _ = _change_tenant(
        tenant_id, lambda t: Tenant(t.tenant_id, "suspended", t.created_at, t.events_per_minute)
    )
    click.echo(
        f"Suspended tenant {tenant_id!r}: its keys are refused within {settings.write_key_cache_seconds:g} s "
        "(CLOUDSCALE_WRITE_KEY_CACHE_SECONDS)."
    )


@tenants.command("resume")
@click.argument("tenant_id", metavar="TENANT")
def resume_tenant(tenant_id: str) -> None:
    """Let a suspended tenant send again (with its keys that are not revoked)."""
    settings, _ = _change_tenant(tenant_id, lambda t: Tenant(t.tenant_id, "active", t.created_at, t.events_per_minute))
    click.echo(f"Resumed tenant {tenant_id!r}: its keys work again within {settings.write_key_cache_seconds:g} s.")


@tenants.command("set-quota")
@click.argument("tenant_id", metavar="TENANT")
@click.option(
    "--events-per-minute",
    type=click.IntRange(min=MIN_TENANT_EVENTS_PER_MINUTE),
    help=f"Its own quota of events a minute, at least {MIN_TENANT_EVENTS_PER_MINUTE} (one full batch).",
)
@click.option("--default", "use_default", is_flag=True, help="Back to CLOUDSCALE_TENANT_EVENTS_PER_MINUTE.")
def set_quota(tenant_id: str, events_per_minute: int | None, use_default: bool) -> None:
    """Set a tenant's quota of events a minute, or put it back to the default."""
    if use_default == (events_per_minute is not None):
        raise click.UsageError("Give --events-per-minute N or --default (one of them).")
    settings, tenant = _change_tenant(
        tenant_id, lambda t: Tenant(t.tenant_id, t.status, t.created_at, events_per_minute)
    )
    click.echo(f"Tenant {tenant_id!r} now has {_quota(tenant, settings)}.")


@click.group()
def keys() -> None:
    """Create, list and revoke write keys.

    A tenant holds at most two live keys of each kind, so a key is rotated without downtime:
    create the new one, deploy it, revoke the old one.
    """


@keys.command("create")
@click.option("--tenant", "tenant_id", required=True, help="The tenant whose events the key sends.")
@click.option(
    "--kind",
    type=click.Choice(["server", "browser"]),
    default="server",
    show_default=True,
    help="server: a secret, for back ends. browser: public, bound to --origin.",
)
@click.option(
    "--origin",
    "origins",
    multiple=True,
    help="Browser keys: an origin its pages are served from (https://shop.example); repeat for more.",
)
@click.option("--label", help="A note for operators: where the key is deployed.")
@click.option("--quiet", "-q", is_flag=True, help="Print the key only, nothing on stderr.")
def create_key(tenant_id: str, kind: str, origins: tuple[str, ...], label: str | None, quiet: bool) -> None:
    """Make a key and print it, once: only its hash is kept."""
    settings = load_cli_settings()
    _tenant_id(tenant_id)
    try:
        issued = issue_key(tenant_id, cast(KeyKind, kind), created_at=datetime.now(UTC), origins=origins, label=label)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None

    async def add(registry: TenantRegistry) -> Tenant | None:
        await registry.add_key(issued.record, max_live_per_kind=MAX_LIVE_KEYS_PER_KIND)
        return await registry.get_tenant(tenant_id)

    tenant = _run(settings, add)
    record = issued.record
    if not quiet:
        if tenant is not None and not tenant.active:
            click.echo(f"Tenant {tenant_id!r} is suspended: the key works once it is resumed.", err=True)
        click.echo(
            f"A new {record.kind} key for tenant {tenant_id!r}, id {record.key_id}"
            + (f", for origins {', '.join(record.origins)}" if record.origins else "")
            + ". It is shown once, here: store it now; only its hash is kept.",
            err=True,
        )
    click.echo(issued.key)


@keys.command("list")
@click.option("--tenant", "tenant_id", required=True, help="The tenant whose keys to list.")
def list_keys(tenant_id: str) -> None:
    """List a tenant's keys, revoked ones too: ids, never secrets."""
    settings = load_cli_settings()
    _tenant_id(tenant_id)

    async def read(registry: TenantRegistry) -> Sequence[WriteKey]:
        await _existing_tenant(registry, tenant_id)
        return await registry.list_keys(tenant_id)

    found = _run(settings, read)
    if not found:
        click.echo(f"Tenant {tenant_id!r} has no keys: cloudscale keys create --tenant {tenant_id}")
        return
    for line in _key_lines(found):
        click.echo(line)


@keys.command("revoke")
@click.argument("key_id", metavar="KEY_ID")
def revoke_key(key_id: str) -> None:
    """Revoke a key (by its id, as `keys list` shows it). There is no undoing it."""
    settings = load_cli_settings()
    parsed = parse_key(key_id)
    if parsed is not None:  # the whole key pasted: its id is in it
        key_id = parsed.key_id
    if _KEY_ID.fullmatch(key_id) is None:
        raise click.ClickException(f"{key_id!r} is not a key id (16 characters, `cloudscale keys list` shows them).")
    at = datetime.now(UTC)
    revoked = _run(settings, lambda registry: registry.revoke_key(key_id, at))
    if revoked.revoked_at != at:
        click.echo(f"Key {key_id} of tenant {revoked.tenant_id!r} was revoked already, at {_when(revoked.revoked_at)}.")
        return
    click.echo(
        f"Revoked key {key_id} of tenant {revoked.tenant_id!r}: it stops working within "
        f"{settings.write_key_cache_seconds:g} s (CLOUDSCALE_WRITE_KEY_CACHE_SECONDS)."
    )
