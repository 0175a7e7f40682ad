"""The composition root chooses each adapter from `CLOUDSCALE_BACKEND`, and only it does."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.adapters.analytics.embedded_analytics import EmbeddedAnalyticsStore
from shared.adapters.analytics.kusto_eraser import KustoAnalyticsEraser
from shared.adapters.dead_letters.embedded import EmbeddedDeadLetterBrowser
from shared.adapters.dead_letters.servicebus_browser import ServiceBusDeadLetterBrowser
from shared.adapters.event_queue.embedded_queue import EMBEDDED_QUEUE_FILE, EmbeddedQueue
from shared.adapters.instance.client_key_secret import CLIENT_KEY_SECRET_FILE, data_folder_secret
from shared.adapters.tenants.embedded_registry import REGISTRY_FILE, EmbeddedTenantRegistry
from shared.adapters.tenants.tables_registry import TableTenantRegistry
from shared.bootstrap import Container
from shared.ports import PortError
from shared.settings import load_settings


def embedded(data_dir: Path, **settings: str) -> Container:
    return Container(
        load_settings({"CLOUDSCALE_BACKEND": "embedded", "CLOUDSCALE_DATA_DIR": str(data_dir), **settings})
    )


def on_azure(**settings: str) -> Container:
    """A container of the Azure backend with identity-based endpoints: nothing connects until used."""
    return Container(
        load_settings(
            {
                "CLOUDSCALE_BACKEND": "azure",
                "ServiceBusConnection__fullyQualifiedNamespace": "cs-test.servicebus.windows.net",
                "CLOUDSCALE_RATE_LIMIT_TABLE_ENDPOINT": "https://cstest.table.core.windows.net",
                "CosmosDBConnection__accountEndpoint": "https://cs-test.documents.azure.com:443/",
                **settings,
            }
        )
    )


async def test_on_azure_the_dead_letter_browser_reads_service_bus_without_connecting() -> None:
    container = on_azure()

    assert isinstance(container.dead_letter_browser, ServiceBusDeadLetterBrowser)
    await container.close()


async def test_embedded_the_dead_letter_browser_reads_the_queue_file_and_closes_with_the_container(
    tmp_path: Path,
) -> None:
    # GIVEN a queue file a host left behind
    queue = EmbeddedQueue(tmp_path / EMBEDDED_QUEUE_FILE)
    await queue.check()
    queue.close()
    container = embedded(tmp_path)

    # WHEN the container provides the browser THEN it is the embedded one, and it works
    browser = container.dead_letter_browser
    assert isinstance(browser, EmbeddedDeadLetterBrowser)
    assert await browser.list(10) == []
    await container.close()


def test_embedded_without_a_queue_file_there_is_nothing_to_browse_and_nothing_is_created(tmp_path: Path) -> None:
    container = embedded(tmp_path)

    with pytest.raises(PortError, match="No embedded queue"):
        _ = container.dead_letter_browser
    assert not (tmp_path / EMBEDDED_QUEUE_FILE).exists()


async def test_embedded_the_histories_are_the_stores_themselves(tmp_path: Path) -> None:
    container = embedded(tmp_path)

    assert container.event_history is container.event_store
    assert isinstance(container.analytics_history, EmbeddedAnalyticsStore)
    assert container.analytics_history is container.analytics_sink
    await container.close()


def test_embedded_the_client_key_secret_is_kept_in_the_data_folder(tmp_path: Path) -> None:
    container = embedded(tmp_path)

    secret = container.client_key_secret()

    assert secret == container.client_key_secret() == data_folder_secret(container.data_dir)
    assert (tmp_path / CLIENT_KEY_SECRET_FILE).exists()


async def test_on_azure_the_tenant_registry_is_the_table_one_and_connects_nothing_until_used() -> None:
    container = on_azure()

    assert isinstance(container.tenant_registry, TableTenantRegistry)
    await container.close()


async def test_embedded_the_tenant_registry_is_the_sqlite_file_in_the_data_folder(tmp_path: Path) -> None:
    container = embedded(tmp_path)

    registry = container.tenant_registry

    assert isinstance(registry, EmbeddedTenantRegistry)
    assert registry.path == tmp_path / REGISTRY_FILE
    await container.close()


async def test_embedded_the_analytics_eraser_is_the_analytics_store_with_the_retention_setting(tmp_path: Path) -> None:
    default = embedded(tmp_path)
    shorter = embedded(tmp_path / "other", CLOUDSCALE_ANALYTICS_RETENTION_DAYS="7")
    try:
        assert isinstance(default.analytics_eraser, EmbeddedAnalyticsStore)
        assert default.analytics_eraser is default.analytics_sink
        assert default.embedded_analytics.retention_days == 30
        assert shorter.embedded_analytics.retention_days == 7
    finally:
        await default.close()
        await shorter.close()


async def test_on_azure_the_analytics_eraser_purges_on_the_ingestion_endpoint_and_connects_nothing_until_used() -> None:
    container = on_azure(
        CLOUDSCALE_KUSTO_CLUSTER_URI="https://cs-test.westeurope.kusto.windows.net",
        CLOUDSCALE_KUSTO_DATABASE="analytics",
    )
    try:
        eraser = container.analytics_eraser
        assert isinstance(eraser, KustoAnalyticsEraser)
        assert eraser.database == "analytics"
        assert eraser.endpoints.ingest == "https://ingest-cs-test.westeurope.kusto.windows.net"
    finally:
        await container.close()
