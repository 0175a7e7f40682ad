"""Reproductions found in review of tenants, write keys and the Segment-compatible API: real socket, real SQLite.

Each test states the behaviour the product promises; each fails on the code as reviewed.
"""

from __future__ import annotations

import base64
import contextlib
import sqlite3
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.conftest import LocalHost, start_host
from tests.e2e.tenants import Registry, bearer
from tests.e2e.test_ingest_api import new_ip
from tests.e2e.test_process_pipeline import TRUSTED_LOOPBACK

pytestmark = pytest.mark.e2e

WAIT_SECONDS = 20.0


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    running = start_host(
        tmp_path_factory.mktemp("data"),
        CLOUDSCALE_WRITE_KEYS="required",
        CLOUDSCALE_WRITE_KEY_CACHE_SECONDS="1",
        **TRUSTED_LOOPBACK,
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def registry(host: LocalHost) -> Registry:
    return Registry(host.data_dir)


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def segment(client: httpx.Client, call: str, body: Any, key: str) -> httpx.Response:
    return client.post(
        f"/api/v1/{call}",
        content=orjson.dumps(body),
        headers={"Content-Type": "application/json", "X-Forwarded-For": new_ip(), **basic(key)},
    )


def events(client: httpx.Client, body: Any, key: str) -> httpx.Response:
    return client.post(
        "/api/events",
        content=orjson.dumps(body),
        headers={"Content-Type": "application/json", "X-Forwarded-For": new_ip(), **bearer(key)},
    )


def stored(client: httpx.Client, tenant: str, event_id: str, key: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        response = client.get(f"/api/events/{tenant}/{event_id}", headers=bearer(key))
        if response.status_code == 200:
            document: dict[str, Any] = response.json()
            return document
        assert response.status_code == 404, response.text
        assert time.monotonic() < deadline, f"event {event_id} was not stored within {WAIT_SECONDS} s"
        time.sleep(0.1)


def in_analytics(host: LocalHost, tenant: str, event_id: str) -> bool:
    path = host.data_dir / "analytics.sqlite3"
    if not path.exists():
        return False
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as connection:
        try:
            rows = connection.execute(
                "SELECT 1 FROM events WHERE TenantId = ? AND EventId = ?", (tenant, event_id)
            ).fetchall()
        except sqlite3.OperationalError:
            return False
    return bool(rows)


def test_a_tenant_quota_below_500_is_enforced_as_set(host: LocalHost, registry: Registry) -> None:
    """`cloudscale tenants create T --events-per-minute 10` is accepted and shown as 10 a minute; 500 get in."""
    tenant = registry.tenant(events_per_minute=10)
    key = registry.key(tenant).key
    batch = [{"eventType": "page_view", "eventId": str(uuid.uuid4())} for _ in range(50)]
    with httpx.Client(base_url=host.url, timeout=10) as client:
        response = events(client, batch, key)
        assert response.status_code == 429, (response.status_code, response.json().get("accepted"))


