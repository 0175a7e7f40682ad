"""Which Data Explorer endpoints the sink uses, from settings; nothing here connects."""

from __future__ import annotations

import pytest

from shared.adapters.analytics.kusto_sink import KustoEndpoints, create_kusto_sink, kusto_endpoints
from shared.settings import SettingsError, load_settings

CLUSTER = "https://mycluster.westeurope.kusto.windows.net"


def endpoints(**environ: str) -> KustoEndpoints:
    return kusto_endpoints(load_settings(environ))


def test_the_ingestion_uri_is_derived_from_the_cluster_uri() -> None:
    assert endpoints(CLOUDSCALE_KUSTO_CLUSTER_URI=CLUSTER + "/") == KustoEndpoints(
        engine=CLUSTER, ingest="https://ingest-mycluster.westeurope.kusto.windows.net"
    )


def test_an_explicit_ingestion_uri_wins() -> None:
    given = endpoints(CLOUDSCALE_KUSTO_CLUSTER_URI=CLUSTER, CLOUDSCALE_KUSTO_INGEST_URI="https://dm.example.net:8443")

    assert given == KustoEndpoints(engine=CLUSTER, ingest="https://dm.example.net:8443")


def test_a_loopback_cluster_serves_both() -> None:
    assert endpoints(CLOUDSCALE_KUSTO_CLUSTER_URI="http://127.0.0.1:8080") == KustoEndpoints(
        engine="http://127.0.0.1:8080", ingest="http://127.0.0.1:8080"
    )


def test_a_missing_cluster_uri_is_named() -> None:
    with pytest.raises(SettingsError, match="CLOUDSCALE_KUSTO_CLUSTER_URI"):
        create_kusto_sink(load_settings({}))


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("http://mycluster.westeurope.kusto.windows.net", "plain http"),
        ("https://ingest-mycluster.westeurope.kusto.windows.net", "ingestion endpoint"),
        (CLUSTER + "/v1/rest/mgmt", "without a path"),
        ("mycluster.westeurope.kusto.windows.net", "expected https://"),
        ("https://mycluster.kusto.windows.net:99999", "not a URI"),
    ],
)
def test_an_unusable_cluster_uri_is_refused_by_name(uri: str, problem: str) -> None:
    with pytest.raises(SettingsError, match="CLOUDSCALE_KUSTO_CLUSTER_URI") as error:
        endpoints(CLOUDSCALE_KUSTO_CLUSTER_URI=uri)

    assert problem in str(error.value)


def test_credentials_in_a_uri_are_refused_without_echoing_them() -> None:
    with pytest.raises(SettingsError, match="CLOUDSCALE_KUSTO_INGEST_URI") as error:
        endpoints(CLOUDSCALE_KUSTO_CLUSTER_URI=CLUSTER, CLOUDSCALE_KUSTO_INGEST_URI="https://me:s3cret@dm.example.net")

    assert "s3cret" not in str(error.value)


async def test_building_and_closing_the_sink_connects_nothing() -> None:
    # An address that cannot resolve: any connection attempt would fail the test with an error.
    sink = create_kusto_sink(load_settings({"CLOUDSCALE_KUSTO_CLUSTER_URI": "https://cluster.example.invalid"}))

    assert sink.database == "cloudscale"
    await sink.close()
    await sink.close()


def test_credentials_in_a_plain_http_uri_are_not_echoed_either() -> None:
    with pytest.raises(SettingsError) as error:
        endpoints(CLOUDSCALE_KUSTO_CLUSTER_URI="http://me:s3cret@cluster.example.net")

    assert "s3cret" not in str(error.value)
