"""The container's analytics eraser and the embedded analytics retention come from the settings."""

from __future__ import annotations

from pathlib import Path

from shared.adapters.analytics.embedded_analytics import EmbeddedAnalyticsStore
from shared.adapters.analytics.kusto_eraser import KustoAnalyticsEraser
from shared.bootstrap import Container
from shared.settings import load_settings


async def test_embedded_the_eraser_is_the_analytics_store_with_the_retention_setting(tmp_path: Path) -> None:
    default = Container(load_settings({"CLOUDSCALE_BACKEND": "embedded", "CLOUDSCALE_DATA_DIR": str(tmp_path)}))
    shorter = Container(
        load_settings(
            {
                "CLOUDSCALE_BACKEND": "embedded",
                "CLOUDSCALE_DATA_DIR": str(tmp_path / "other"),
                "CLOUDSCALE_ANALYTICS_RETENTION_DAYS": "7",
            }
        )
    )
    try:
        assert isinstance(default.analytics_eraser, EmbeddedAnalyticsStore)
        assert default.analytics_eraser is default.analytics_sink
        assert default.embedded_analytics.retention_days == 30
        assert shorter.embedded_analytics.retention_days == 7
    finally:
        await default.close()
        await shorter.close()


async def test_on_azure_the_eraser_purges_on_the_cluster_s_ingestion_endpoint_and_connects_nothing_until_used() -> None:
    container = Container(
        load_settings(
            {
                "CLOUDSCALE_BACKEND": "azure",
                "ServiceBusConnection__fullyQualifiedNamespace": "cs-test.servicebus.windows.net",
                "CLOUDSCALE_RATE_LIMIT_TABLE_ENDPOINT": "https://cstest.table.core.windows.net",
                "CosmosDBConnection__accountEndpoint": "https://cs-test.documents.azure.com:443/",
                "CLOUDSCALE_KUSTO_CLUSTER_URI": "https://cs-test.westeurope.kusto.windows.net",
                "CLOUDSCALE_KUSTO_DATABASE": "analytics",
            }
        )
    )
    try:
        eraser = container.analytics_eraser
        assert isinstance(eraser, KustoAnalyticsEraser)
        assert eraser.database == "analytics"
        assert eraser.endpoints.ingest == "https://ingest-cs-test.westeurope.kusto.windows.net"
    finally:
        await container.close()
