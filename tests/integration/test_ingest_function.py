"""The ingest function's own answer to a fault of ours: a counted, generic 500.

Runs the real function body with the embedded rate-limit store; only the queue is replaced,
by one with a bug, because no real input makes the real queue fail other than as a 503.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import azure.functions as func
import orjson
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from ingest.blueprint import _ingest
from ingest.http import IngestEndpoint
from ingest.rate_limiter import RateLimiter
from ingest.service import IngestService
from shared.assembly import build_ingest_endpoint
from shared.bootstrap import Container, set_container
from shared.domain.client_identity import ClientKeyer
from shared.domain.envelope import QueueMessage
from shared.domain.ratelimit import BucketLimits
from shared.settings import load_settings
from shared.telemetry import IngestMetrics


class BuggyPublisher:
    """A queue adapter with a programming error: not a `PortError`, so not an outage."""

    async def publish(self, messages: Sequence[QueueMessage]) -> None:
        raise KeyError("a bug with a secret detail: /srv/app/internal.py")

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.fixture
async def reader(tmp_path: Path) -> AsyncIterator[InMemoryMetricReader]:
    """A container whose ingest endpoint publishes to `BuggyPublisher` and records into the reader."""
    container = Container(load_settings({"CLOUDSCALE_DATA_DIR": str(tmp_path)}))
    reader = InMemoryMetricReader()
    limiter = RateLimiter(container.rate_limit_store, ip_limits=BucketLimits(100, 10), global_per_minute=10_000)
    container.on_close(limiter.close)
    metrics = IngestMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))
    endpoint = IngestEndpoint(
        use_case=IngestService(limiter, BuggyPublisher(), ClientKeyer(b"a test secret of 32 bytes length"), metrics),
        trusted_proxies=container.settings.trusted_proxies,
        answer_time=metrics.ingestion_duration,
    )
    container._singletons[build_ingest_endpoint] = endpoint  # the assembly's own cache slot
    set_container(container)
    yield reader
    set_container(None)
    await container.close()


def status_codes(reader: InMemoryMetricReader) -> dict[object, int]:
    """How many answers `cloudscale_ingestion_duration_seconds` recorded, by status code."""
    data = reader.get_metrics_data()
    counts: dict[object, int] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "cloudscale_ingestion_duration_seconds":
                    for point in metric.data.data_points:
                        counts[point.attributes["status_code"]] = point.count  # type: ignore[index,union-attr]
    return counts


async def test_an_unexpected_error_is_a_counted_500_with_a_generic_body(
    reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    request = func.HttpRequest(
        "POST",
        "http://127.0.0.1/api/events",
        headers={"Content-Type": "application/json"},
        body=orjson.dumps({"eventType": "page_view", "tenantId": "acme"}),
    )

    with caplog.at_level(logging.ERROR, logger="ingest.blueprint"):
        response = await _ingest(request)

    assert response.status_code == 500
    body = orjson.loads(response.get_body())
    assert body == {"error": "internal_error", "message": "the request failed unexpectedly; retry later", "details": []}
    assert status_codes(reader) == {500: 1}
    # the detail is in the log only
    assert "Traceback" in caplog.text
    assert "/srv/app/internal.py" in caplog.text


async def test_services_that_cannot_start_for_a_full_or_unusable_data_folder_answer_503(tmp_path: Path) -> None:
    # GIVEN a data folder that cannot be created (its parent is a file), as a full or
    # unwritable disk would leave it: the client-key secret cannot be written
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    container = Container(load_settings({"CLOUDSCALE_DATA_DIR": str(blocker / "data")}))
    set_container(container)
    try:
        request = func.HttpRequest(
            "POST",
            "http://127.0.0.1/api/events",
            headers={"Content-Type": "application/json"},
            body=orjson.dumps({"eventType": "page_view", "tenantId": "acme"}),
        )
        response = await _ingest(request)
    finally:
        set_container(None)
        await container.close()
    # THEN the producer is told to retry, not that the request was at fault (and not a 500)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert orjson.loads(response.get_body())["error"] == "unavailable"


async def test_invalid_settings_answer_503_misconfigured_retry_in_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN no container yet, and settings that do not validate
    set_container(None)
    monkeypatch.setenv("CLOUDSCALE_BACKEND", "not-a-backend")
    request = func.HttpRequest(
        "POST",
        "http://127.0.0.1/api/events",
        headers={"Content-Type": "application/json"},
        body=orjson.dumps({"eventType": "page_view", "tenantId": "acme"}),
    )
    try:
        response = await _ingest(request)
    finally:
        set_container(None)
    # THEN the producer learns the service is misconfigured (an operator must act), never why
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "60"
    assert orjson.loads(response.get_body()) == {
        "error": "misconfigured",
        "message": "the service is misconfigured; see its log",
        "details": [],
    }
