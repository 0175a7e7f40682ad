"""The Segment-compatible API with real SDKs through a real socket: segment-analytics-python and
rudder-sdk-python, pointed at the local host, as a user switching over would point them.

The SDKs run in their own venv (`.venv-sdk`, built by `make test`; see
tests/e2e/segment_sdks/requirements.in for why), driven by tests/e2e/segment_sdks/driver.py.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.conftest import REPO, LocalHost, start_host
from tests.e2e.tenants import Registry

pytestmark = pytest.mark.e2e

SDK_PYTHON = REPO / ".venv-sdk" / "bin" / "python"
DRIVER = REPO / "tests" / "e2e" / "segment_sdks" / "driver.py"
WAIT_SECONDS = 30.0
"""How long a test waits for the pipeline to store what was accepted: a bound, not a speed claim."""

SETTINGS = {
    "CLOUDSCALE_WRITE_KEYS": "required",
    # One client (the SDK) sends a thousand events in a few seconds: the per-client limit is
    # not what these tests are about.
    "CLOUDSCALE_RATE_LIMIT_IP_CAPACITY": "100000",
    "CLOUDSCALE_RATE_LIMIT_IP_REFILL_PER_SECOND": "100000",
}


@dataclass(frozen=True)
class Segment:
    """A running host with tenant `acme` and its server key, and `globex` with its own."""

    host: LocalHost
    key: str
    other_key: str

    def api(self) -> str:
        return f"{self.host.url}/api"


@pytest.fixture(scope="module")
def sdk_python() -> Path:
    if not SDK_PYTHON.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SDK_PYTHON} is missing: `make test` builds it (required under CI=true)")
        pytest.skip(f"{SDK_PYTHON} is missing: `make test` builds the SDK venv")
    return SDK_PYTHON


@pytest.fixture(scope="module")
def segment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Segment]:
    data_dir = tmp_path_factory.mktemp("data")
    # acme and its key as an operator makes them: with the command line.
    cloudscale(data_dir, "tenants", "create", "acme")
    key = cloudscale(data_dir, "keys", "create", "--tenant", "acme", "--quiet").strip()
    registry = Registry(data_dir)
    other_key = registry.key(registry.tenant("globex")).key
    host = start_host(data_dir, **SETTINGS)
    yield Segment(host, key, other_key)
    host.stop()


def cloudscale(data_dir: Path, *args: str) -> str:
    """Run the `cloudscale` command line on the host's data folder; its standard output."""
    env = {**os.environ, "CLOUDSCALE_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "cloudscale_local.cli.main", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def run_sdk(
    python: Path, sdk: str, host: str, key: str, calls: list[tuple[str, dict[str, Any]]], **options: Any
) -> dict[str, Any]:
    """Run the calls through the SDK in its venv; its errors and what each call returned."""
    plan = {
        "sdk": sdk,
        "host": host,
        "write_key": key,
        "options": options,
        "calls": [{"call": call, "args": args} for call, args in calls],
    }
    done = subprocess.run(
        [str(python), str(DRIVER)], input=orjson.dumps(plan), capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    result: dict[str, Any] = orjson.loads(done.stdout)
    return result


def stored(client: httpx.Client, key: str, tenant: str, event_id: str) -> dict[str, Any]:
    """The stored event, read back with the tenant's server key, polling until it is there."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        response = client.get(f"/api/events/{tenant}/{event_id}", headers={"Authorization": f"Bearer {key}"})
        if response.status_code == 200:
            document: dict[str, Any] = response.json()
            return document
        assert response.status_code == 404, response.text
        assert time.monotonic() < deadline, f"event {event_id} was not stored within {WAIT_SECONDS} s"
        time.sleep(0.05)


def analytics(host: LocalHost, sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
    path = host.data_dir / "analytics.sqlite3"
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as connection:
        try:
            return connection.execute(sql, parameters).fetchall()
        except sqlite3.OperationalError:  # the table is made with the first write
            return []


def analytics_row(host: LocalHost, tenant: str, event_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    columns = (
        "EventId, TenantId, EventType, Name, UserId, AnonymousId, GroupId, PreviousId, Traits, Context, Properties"
    )
    while not (
        rows := analytics(host, f"SELECT {columns} FROM events WHERE TenantId = ? AND EventId = ?", tenant, event_id)
    ):
        assert time.monotonic() < deadline, f"event {event_id} did not reach analytics within {WAIT_SECONDS} s"
        time.sleep(0.05)
    [row] = rows
    return dict(zip([name.strip() for name in columns.split(",")], row, strict=True))


CALLS: list[tuple[str, dict[str, Any]]] = [
    ("track", {"user_id": "u1", "event": "Signed Up", "properties": {"plan": "pro"}}),
    ("identify", {"user_id": "u1", "traits": {"email": "u1@example.com"}}),
    ("page", {"anonymous_id": "a1", "name": "Home", "category": "Docs", "properties": {"path": "/"}}),
    ("screen", {"user_id": "u1", "name": "Main"}),
    ("group", {"user_id": "u1", "group_id": "g1", "traits": {"seats": 3}}),
    ("alias", {"previous_id": "a1", "user_id": "u1"}),
]


@pytest.mark.parametrize(
    ("sdk", "options"), [("segment", {"sync_mode": True}), ("segment", {"gzip": True}), ("rudder", {})]
)
def test_every_call_of_a_real_sdk_is_stored_enriched_and_in_analytics_under_the_keys_tenant(
    sdk_python: Path, segment: Segment, sdk: str, options: dict[str, Any]
) -> None:
    # GIVEN acme's key in the SDK, the host as its API host (rudder: gzip by default)
    # WHEN it sends one call of each kind
    result = run_sdk(sdk_python, sdk, segment.api(), segment.key, CALLS, **options)

    # THEN the SDK saw no error, and each call is a stored, enriched event of acme, its
    # messageId the eventId
    assert result["errors"] == []
    messages = result["returned"]
    assert [message["type"] for message in messages] == [call for call, _ in CALLS]
    with segment.host.client() as client:
        documents = [stored(client, segment.key, "acme", message["messageId"]) for message in messages]
    track, identify, page, screen, group, alias = documents
    assert (track["eventType"], track["name"], track["userId"], track["properties"]) == (
        "track",
        "Signed Up",
        "u1",
        {"plan": "pro"},
    )
    assert track["context"]["library"]["name"] == "analytics-python"
    assert track["enrichment"]["clientNetwork"] == "127.0.0.0/24"
    assert track["fraud"]["score"] >= 0
    assert "originalTimestamp" in track
    assert "sentAt" in track
    assert (identify["eventType"], identify["traits"]) == ("identify", {"email": "u1@example.com"})
    assert (page["name"], page["anonymousId"], page["properties"]) == ("Home", "a1", {"path": "/", "category": "Docs"})
    assert (screen["eventType"], screen["name"]) == ("screen", "Main")
    assert (group["groupId"], group["traits"]) == ("g1", {"seats": 3})
    assert (alias["previousId"], alias["userId"]) == ("a1", "u1")

    # AND each is one analytics row under acme, keyed by its messageId
    rows = [analytics_row(segment.host, "acme", message["messageId"]) for message in messages]
    assert [(row["EventType"], row["TenantId"]) for row in rows] == [(call, "acme") for call, _ in CALLS]
    assert rows[0]["Name"] == "Signed Up"
    assert orjson.loads(rows[1]["Traits"]) == {"email": "u1@example.com"}
    assert (rows[2]["AnonymousId"], rows[4]["GroupId"], rows[5]["PreviousId"]) == ("a1", "g1", "a1")
    assert orjson.loads(rows[0]["Context"])["library"]["name"] == "analytics-python"


def test_a_bad_write_key_makes_the_sdk_report_an_error(sdk_python: Path, segment: Segment) -> None:
    bad = segment.key[:-4] + ("aaaa" if not segment.key.endswith("aaaa") else "bbbb")

    result = run_sdk(sdk_python, "segment", segment.api(), bad, CALLS[:1], sync_mode=True)

    [error] = result["errors"]
    assert "401" in error
    assert "invalid_key" in error


def test_the_rudder_sdk_reports_a_bad_key_too(sdk_python: Path, segment: Segment) -> None:
    result = run_sdk(sdk_python, "rudder", segment.api(), "cs_sk_unknown", CALLS[:1], sync_mode=True)

    [error] = result["errors"]
    assert "401" in error


def test_the_python_sdk_sends_a_thousand_events_and_each_is_in_analytics_once(
    sdk_python: Path, segment: Segment
) -> None:
    # GIVEN a key made with `cloudscale keys create`, and a thousand track calls through the
    # SDK's own background queue and batching, gzip on
    calls = [("track", {"user_id": f"user-{n}", "event": "Thousand", "properties": {"n": n}}) for n in range(1000)]

    result = run_sdk(sdk_python, "segment", segment.api(), segment.key, calls, gzip=True, upload_size=100)

    # THEN the SDK reported nothing, and exactly these 1,000 events are rows of acme, each once
    assert result["errors"] == []
    sent = {message["messageId"] for message in result["returned"]}
    assert len(sent) == 1000
    deadline = time.monotonic() + WAIT_SECONDS
    sql = "SELECT count(*), count(DISTINCT EventId) FROM events WHERE TenantId = 'acme' AND Name = 'Thousand'"
    while analytics(segment.host, sql)[0][0] < 1000:
        assert time.monotonic() < deadline, f"only {analytics(segment.host, sql)} of 1000 rows within {WAIT_SECONDS} s"
        time.sleep(0.1)
    assert analytics(segment.host, sql) == [(1000, 1000)]
    rows = analytics(segment.host, "SELECT EventId FROM events WHERE Name = 'Thousand'")
    assert {event_id for (event_id,) in rows} == sent
    assert analytics(segment.host, "SELECT count(*) FROM events WHERE Name = 'Thousand' AND TenantId != 'acme'") == [
        (0,)
    ]


def test_an_sdk_told_to_wait_by_a_429_retries_and_loses_nothing(
    sdk_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # GIVEN a host whose per-client bucket holds one SDK batch (100 events) and refills it in a second
    data_dir = tmp_path_factory.mktemp("data")
    registry = Registry(data_dir)
    key = registry.key(registry.tenant("acme")).key
    host = start_host(
        data_dir,
        CLOUDSCALE_WRITE_KEYS="required",
        CLOUDSCALE_RATE_LIMIT_IP_CAPACITY="100",
        CLOUDSCALE_RATE_LIMIT_IP_REFILL_PER_SECOND="100",
    )
    try:
        # WHEN the SDK sends five batches back to back
        calls = [("track", {"user_id": "u", "event": "Limited", "properties": {"n": n}}) for n in range(500)]
        result = run_sdk(sdk_python, "segment", f"{host.url}/api", key, calls, upload_size=100)

        # THEN it was refused with 429 on the way, waited its Retry-After, and every event arrived once
        assert result["errors"] == []
        with host.client() as client:
            metrics = client.get("/metrics").text
        assert any(
            line.startswith("cloudscale_rate_limit_rejections_total{") and 'limit="ip"' in line
            for line in metrics.splitlines()
        )
        sql = "SELECT count(*), count(DISTINCT EventId) FROM events WHERE Name = 'Limited'"
        deadline = time.monotonic() + WAIT_SECONDS
        while analytics(host, sql)[0][0] < 500:
            assert time.monotonic() < deadline, f"only {analytics(host, sql)} of 500 rows within {WAIT_SECONDS} s"
            time.sleep(0.1)
        assert analytics(host, sql) == [(500, 500)]
    finally:
        host.stop()


# --- the API itself, with a plain HTTP client --------------------------------------------------


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def test_a_request_without_a_key_is_challenged_for_basic(segment: Segment) -> None:
    with segment.host.client() as client:
        response = client.post("/api/v1/track", json={"userId": "u", "event": "e"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Basic realm="cloudscale"')
    assert response.json()["code"] == response.json()["error"] == "missing_key"


def test_a_message_naming_another_tenant_does_not_land_there(segment: Segment) -> None:
    with segment.host.client() as client:
        response = client.post(
            "/api/v1/batch",
            headers=basic(segment.key),
            json={
                "batch": [
                    {"type": "track", "userId": "u", "event": "mine", "messageId": "tenant-check-1"},
                    {
                        "type": "track",
                        "userId": "u",
                        "event": "theirs",
                        "messageId": "tenant-check-2",
                        "tenantId": "globex",
                    },
                ]
            },
        )
        body = response.json()
        stored(client, segment.key, "acme", "tenant-check-1")
        other = client.get(
            "/api/events/globex/tenant-check-2", headers={"Authorization": f"Bearer {segment.other_key}"}
        )

    assert response.status_code == 200
    assert body["success"] is True
    assert (body["accepted"], body["rejected"]) == (1, 1)
    [rejected] = body["errors"]
    assert rejected["index"] == 1
    assert rejected["errors"][0]["type"] == "tenant_mismatch"
    assert other.status_code == 404


def test_a_single_call_gzipped_as_text_plain_is_accepted_with_the_short_path(segment: Segment) -> None:
    # analytics.js posts text/plain to /v1/t; a gzip body is inflated.
    body = gzip.compress(orjson.dumps({"anonymousId": "a9", "event": "Beacon", "messageId": "ajs-next-1-x"}))
    with segment.host.client() as client:
        response = client.post(
            "/api/v1/t",
            content=body,
            headers={**basic(segment.key), "Content-Type": "text/plain", "Content-Encoding": "gzip"},
        )
        document = stored(client, segment.key, "acme", "ajs-next-1-x")

    assert (response.status_code, response.json()) == (200, {"success": True})
    assert (document["eventType"], document["name"], document["anonymousId"]) == ("track", "Beacon", "a9")


def test_every_message_rejected_is_a_400_naming_the_segment_fields(segment: Segment) -> None:
    with segment.host.client() as client:
        response = client.post(
            "/api/v1/batch", headers=basic(segment.key), json={"batch": [{"type": "track", "userId": "u"}]}
        )

    assert response.status_code == 400
    [result] = response.json()["details"]
    assert result["errors"][0]["field"] == "batch[0].event"


def test_a_gzip_bomb_is_refused_with_413(segment: Segment) -> None:
    bomb = gzip.compress(b'{"batch": [{"p": "' + b"0" * (8 * 1024 * 1024) + b'"}]}')
    with segment.host.client() as client:
        response = client.post(
            "/api/v1/batch",
            content=bomb,
            headers={**basic(segment.key), "Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    assert response.status_code == 413
    assert "inflates to more than" in response.json()["message"]


def test_an_unknown_call_is_404(segment: Segment) -> None:
    with segment.host.client() as client:
        response = client.post("/api/v1/purchase", headers=basic(segment.key), json={})

    assert response.status_code == 404


def test_a_clock_skew_correction_beyond_representable_times_is_a_400_not_a_500(segment: Segment) -> None:
    # `receivedAt - (sentAt - originalTimestamp)` overflows for extreme but well-formed times.
    message = {
        "userId": "u1",
        "event": "Signed Up",
        "originalTimestamp": "9999-12-31T00:00:00Z",
        "sentAt": "0001-01-02T00:00:00Z",
    }
    with segment.host.client() as client:
        single = client.post("/api/v1/track", headers=basic(segment.key), json=message)
        batch = client.post("/api/v1/batch", headers=basic(segment.key), json={"batch": [{"type": "track", **message}]})

    assert single.status_code == 400, single.text
    assert batch.status_code == 400, batch.text


def test_a_message_with_timestamp_and_original_timestamp_is_stored_with_both(segment: Segment) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    message = {
        "messageId": "both-times-1",
        "userId": "u1",
        "event": "Signed Up",
        "timestamp": now,
        "originalTimestamp": "2020-01-01T00:00:00Z",
    }
    with segment.host.client() as client:
        response = client.post("/api/v1/track", headers=basic(segment.key), json=message)
        assert response.status_code == 200, response.text
        document = stored(client, segment.key, "acme", "both-times-1")

    assert document["originalTimestamp"].startswith("2020-01-01T00:00:00")
    assert document["timestamp"].startswith(now[:19])


def test_a_batch_timestamp_is_stored_as_the_batch_sent_time(segment: Segment) -> None:
    body = {
        "batch": [{"type": "track", "messageId": "batch-time-1", "userId": "u1", "event": "Signed Up"}],
        "timestamp": "2020-01-01T00:00:00Z",
    }
    with segment.host.client() as client:
        response = client.post("/api/v1/batch", headers=basic(segment.key), json=body)
        assert response.status_code == 200, response.text
        document = stored(client, segment.key, "acme", "batch-time-1")

    assert document["sentAt"].startswith("2020-01-01T00:00:00")
