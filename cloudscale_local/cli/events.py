"""`cloudscale events get TENANT EVENT_ID`: an operator reads any tenant's stored event.

Producers read their own tenant's events over HTTP with a server key
(`GET /api/events/{tenantId}/{eventId}`). An operator needs no key: this command reads the
event store directly with the operator's own access to it (the data folder embedded; on Azure
the Cosmos DB account through `DefaultAzureCredential`), so no route exists that would let a
key, or the lack of one, read across tenants.
"""

from __future__ import annotations

import asyncio
import os

import click
import orjson

from shared.bootstrap import Container
from shared.domain.events import canonical_event_id
from shared.domain.stored_event import StoredEvent
from shared.ports import PortError
from shared.settings import SettingsError, load_settings

__all__ = ["events"]


@click.group()
def events() -> None:
    """Read stored events (any tenant: an operator's view)."""


@events.command("get")
@click.argument("tenant_id")
@click.argument("event_id")
def get(tenant_id: str, event_id: str) -> None:
    """Print the stored event EVENT_ID of TENANT_ID as JSON (exit 1 when it is not stored)."""
    try:
        settings = load_settings(os.environ)
        event_id = canonical_event_id(event_id)
    except (SettingsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        stored = asyncio.run(_get(Container(settings), tenant_id, event_id))
    except PortError as exc:
        raise click.ClickException(f"the event store could not be read: {exc}") from None
    if stored is None:
        raise click.ClickException(f"event {event_id} of tenant {tenant_id} is not stored (yet)")
    click.echo(orjson.dumps(stored.to_document(), option=orjson.OPT_INDENT_2).decode())


async def _get(container: Container, tenant_id: str, event_id: str) -> StoredEvent | None:
    try:
        return await container.event_store.get(tenant_id, event_id)
    finally:
        await container.close()
