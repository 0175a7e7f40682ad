"""Table clients the Table Storage adapters' tests share: a fresh table name, a table nothing
answers for, and a principal allowed on one table only."""

from __future__ import annotations

import uuid
from typing import Any

from azure.core.exceptions import HttpResponseError
from azure.data.tables import TableClient as SyncTableClient
from azure.data.tables.aio import TableClient

from tests.integration.azurite import ACCOUNT, free_port

__all__ = ["TableScopedRole", "fresh_table_name", "table_scoped_client", "unreachable_table_client"]


def fresh_table_name(prefix: str) -> str:
    """A table of its own per test, so tests share one emulator without sharing state."""
    return f"{prefix}{uuid.uuid4().hex[:16]}"


def unreachable_table_client(table_name: str) -> TableClient:
    """A client of a loopback port nothing listens on, without SDK-level retries (so a test
    does not wait out the default backoff)."""
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey=a2V5;"
        f"TableEndpoint=http://127.0.0.1:{free_port()}/{ACCOUNT};"
    )
    return TableClient.from_connection_string(connection_string, table_name=table_name, retry_total=0)


class TableScopedRole(TableClient):
    """A client whose principal has Storage Table Data Contributor on the table only: creating
    a table (an account-level operation) is refused with 403, as Azure refuses it."""

    async def create_table(self, **kwargs: Any) -> Any:
        response = HttpResponseError("This request is not authorized to perform this operation using this permission.")
        response.status_code = 403
        raise response


def table_scoped_client(connection_string: str, table_name: str) -> TableClient:
    """A `TableScopedRole` client of `table_name`, which an administrator created first."""
    with SyncTableClient.from_connection_string(connection_string, table_name=table_name) as admin:
        admin.create_table()
    return TableScopedRole.from_connection_string(connection_string, table_name=table_name)
