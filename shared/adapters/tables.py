"""What every Table Storage adapter does alike: build its `TableClient` from settings, create
the table on first use, turn the SDK's errors into the adapter's port error (`Table.guarded`),
read one entity, close the client and its credential.

Error translation stays with each adapter: each one's port has its own error type and wording.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableEntity
from azure.data.tables.aio import TableClient

from shared.settings import Settings

__all__ = ["Table", "table_client_from_settings"]


def table_client_from_settings(settings: Settings, table_name: str) -> tuple[TableClient, AsyncTokenCredential | None]:
    """A client of `table_name` in the rate-limit table's account, and the credential it owns:
    the identity-based endpoint if set (`DefaultAzureCredential`), else the `AzureWebJobsStorage`
    connection string (no credential)."""
    endpoint = settings.rate_limit_table_endpoint
    if endpoint:
        # Imported here: azure.identity is only needed for identity-based access.
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential()
        return TableClient(endpoint, table_name=table_name, credential=credential), credential
    if not settings.webjobs_storage_connection_string:
        raise ValueError(
            "Set CLOUDSCALE_RATE_LIMIT_TABLE_ENDPOINT, AzureWebJobsStorage__tableServiceUri or AzureWebJobsStorage"
        )
    return TableClient.from_connection_string(settings.webjobs_storage_connection_string, table_name=table_name), None


class Table:
    """One table behind a `TableClient`, created on first use; owns the client and `credential`."""

    def __init__(self, client: TableClient, *, credential: AsyncTokenCredential | None = None) -> None:
        """Wrap `client`; nothing connects until `ensure_exists`. `credential`: closed with the client."""
        self.client = client
        self._credential = credential
        self._ready = False
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        """The table's name."""
        return self.client.table_name

    async def ensure_exists(self) -> None:
        """Create the table once per instance; SDK errors other than the two below propagate."""
        if self._ready:
            return
        async with self._lock:
            if self._ready:
                return
            # Another instance, an operator's CLI or the deployment may have created it first.
            try:
                await self.client.create_table()
            except ResourceExistsError:
                pass
            except HttpResponseError as exc:
                # Creating a table is an account-level operation: an operator granted Storage
                # Table Data Contributor on this table alone gets 403 here although the table
                # exists. Go on; if it is missing, the first read or write says so.
                if exc.status_code != 403:
                    raise
            self._ready = True

    @asynccontextmanager
    async def guarded(self, error: Callable[[str], Exception], what: str) -> AsyncIterator[None]:
        """Create the table on first use, then run the block; an SDK or transport error (creating
        or in the block) becomes `error("<what> table '<name>': <the service's message>")`, the
        adapter's port error. Anything else the block raises passes through unchanged."""
        try:
            await self.ensure_exists()
            yield
        except AzureError as exc:
            raise error(f"{what} table {self.name!r}: {exc.message}") from exc

    async def get(self, partition: str, row_key: str) -> TableEntity | None:
        """The entity, or None if there is none."""
        try:
            return await self.client.get_entity(partition, row_key)
        except ResourceNotFoundError:
            return None

    async def close(self) -> None:
        """Close the client, then the credential, if owned."""
        await self.client.close()
        if self._credential is not None:
            await self._credential.close()
