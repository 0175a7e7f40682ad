"""Readiness over the real embedded adapters: a busy writer, an analytics store that is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ingest.health import CRITICAL_CHECKS, _probe, check_readiness
from ingest.http import readiness_response
from shared.adapters.analytics.embedded_analytics import ANALYTICS_FILE
from shared.assembly import build_readiness_probes
from shared.bootstrap import Container
from shared.settings import load_settings


@pytest.fixture
async def container(tmp_path: Path) -> AsyncIterator[Container]:
    built = Container(load_settings({"CLOUDSCALE_DATA_DIR": str(tmp_path)}))
    yield built
    await built.close()


async def test_a_busy_queue_writer_does_not_make_the_instance_unready(container: Container) -> None:
    # GIVEN the queue's writer busy with one long transaction (as under a burst of publishes):
    # its probe waits its turn, as a publish would, and takes longer than a short timeout
    queue = container.embedded_queue
    await queue.check()  # opened
    # the real writer thread, kept busy
    busy = asyncio.create_task(queue._worker.run(lambda _connection: time.sleep(3.5)))
    await asyncio.sleep(0.2)  # the long job has started
    started = time.monotonic()

    report = await check_readiness(build_readiness_probes(container))
    waited = time.monotonic() - started
    await busy

    # THEN readiness waited within its budget instead of flipping to 503
    assert waited >= 3.0, "the probe did not wait behind the busy writer"
    assert report.status == "healthy", report.detailed()
    assert readiness_response(report).status_code == 200


async def test_analytics_down_degrades_without_failing_readiness(container: Container, tmp_path: Path) -> None:
    # GIVEN the analytics file cannot be opened (a folder stands where the database should be)
    (tmp_path / ANALYTICS_FILE).mkdir()

    report = await check_readiness(build_readiness_probes(container))

    # THEN ingest still accepts (200), and the answer says what is down
    assert readiness_response(report).status_code == 200
    assert report.public() == {
        "status": "degraded",
        "checks": {
            "queue": {"status": "healthy"},
            "rateLimitStore": {"status": "healthy"},
            "eventStore": {"status": "healthy"},
            "analytics": {"status": "unhealthy", "reason": "unavailable"},
            "clientKey": {"status": "healthy"},
        },
    }
    assert str(tmp_path) in str(report.detailed()), "operators get the error text with the file"


async def test_without_its_client_key_secret_on_azure_the_instance_is_not_ready() -> None:
    # GIVEN Azure settings without CLOUDSCALE_CLIENT_KEY_SECRET (ingest then answers 503)
    settings = load_settings(
        {
            "CLOUDSCALE_BACKEND": "azure",
            "ServiceBusConnection__fullyQualifiedNamespace": "cs.servicebus.windows.net",
            "CLOUDSCALE_RATE_LIMIT_TABLE_ENDPOINT": "https://cs.table.core.windows.net",
            "CosmosDBConnection__accountEndpoint": "https://cs.documents.azure.com:443/",
        }
    )
    # (only this probe is run: the others would reach for Azure, which no test may)
    container = Container(settings)
    result = await _probe("clientKey", build_readiness_probes(container).client_key, 0.5)
    # THEN readiness fails on it, critically, with the code an anonymous caller may see
    assert (result.healthy, result.reason) == (False, "misconfigured")
    assert "clientKey" in CRITICAL_CHECKS
