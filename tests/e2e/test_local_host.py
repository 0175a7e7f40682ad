"""The local host as a process: settings, limits across IPs, and stopping without loss."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import orjson
import pytest

from cloudscale_local.host.feed_timings import FeedTimings
from shared.domain.envelope import event_message_id
from tests.e2e.conftest import INGEST_ONLY, REPO, LocalHost
from tests.e2e.test_ingest_api import SEED_EXAMPLE, assert_error, post, queued

pytestmark = pytest.mark.e2e


def test_without_a_trusted_proxy_forwarded_addresses_are_ignored(host_factory: Callable[..., LocalHost]) -> None:
    # GIVEN a host that trusts no proxy and a bucket of 5 that barely refills
    host = host_factory(
        CLOUDSCALE_RATE_LIMIT_IP_CAPACITY="5", CLOUDSCALE_RATE_LIMIT_IP_REFILL_PER_SECOND="0.01", **INGEST_ONLY
    )

    # WHEN a client claims a new address on every request
    with host.client() as client:
        statuses = [post(client, SEED_EXAMPLE, f"203.0.113.{n}").status_code for n in range(6)]
        event_id = post(client, SEED_EXAMPLE, "203.0.113.99")

    # THEN it is still one client: its socket address
    assert statuses == [202] * 5 + [429]
    assert event_id.status_code == 429
    envelope = orjson.loads(next(iter(queued(host).values())).body)
    assert envelope["clientNetwork"] == "127.0.0.0/24"


def test_the_global_window_refuses_past_its_limit_across_clients(host_factory: Callable[..., LocalHost]) -> None:
    host = host_factory(CLOUDSCALE_RATE_LIMIT_GLOBAL_PER_MINUTE="20", CLOUDSCALE_TRUSTED_PROXIES="127.0.0.1")

    with host.client() as client:
        statuses = [post(client, SEED_EXAMPLE, f"192.0.2.{n}").status_code for n in range(21)]
        refused = post(client, SEED_EXAMPLE, "192.0.2.200")
        metrics = client.get("/metrics").text

    assert statuses == [202] * 20 + [429]
    body = assert_error(refused, 429, "rate_limited")
    assert body["details"] == [{"limit": "global"}]
    assert refused.headers["RateLimit-Limit"] == "20"
    assert int(refused.headers["Retry-After"]) >= 1
    assert 'cloudscale_rate_limit_rejections_total{limit="global"' in metrics.replace(
        'otel_scope_name="cloudscale",otel_scope_schema_url="",otel_scope_version="",', ""
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CLOUDSCALE_RATE_LIMIT_IP_CAPACITY", "lots"),
        ("CLOUDSCALE_RATE_LIMIT_GLOBAL_PER_MINUTE", "0"),
        ("CLOUDSCALE_TRUSTED_PROXIES", "not-an-address"),
        ("CLOUDSCALE_BACKEND", "cloud"),
        # Copied from local.settings.sample.json and never filled in.
        ("ServiceBusConnection__fullyQualifiedNamespace", "<namespace>.servicebus.windows.net"),
        ("CLOUDSCALE_KUSTO_CLUSTER_URI", "https://<cluster>.<region>.kusto.windows.net"),
    ],
)
def test_bad_settings_stop_the_host_before_it_listens_naming_the_setting(name: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cloudscale_local.cli.main", "run", "--port", "0"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), name: value},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert name in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "listening" not in result.stdout


def test_a_placeholder_in_a_connection_string_stops_the_host_without_printing_the_key() -> None:
    key = "c2VjcmV0LWtleS1kby1ub3QtbG9nLWl0LWFueXdoZXJlIQ="
    value = f"Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={key}"
    result = subprocess.run(
        [sys.executable, "-m", "cloudscale_local.cli.main", "run", "--port", "0"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "CLOUDSCALE_BACKEND": "azure", "ServiceBusConnection": value},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "ServiceBusConnection: still holds the placeholder" in result.stderr
    assert key not in result.stderr + result.stdout
    assert "listening" not in result.stdout


def test_azure_backend_without_connections_names_what_is_missing() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ServiceBus", "AzureWebJobs"))}
    result = subprocess.run(
        [sys.executable, "-m", "cloudscale_local.cli.main", "run", "--port", "0"],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO), "CLOUDSCALE_BACKEND": "azure"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "ServiceBusConnection__fullyQualifiedNamespace" in result.stderr


def produce_until_stopped(host: LocalHost, stop: Callable[[], None], enough: int = 300) -> set[str]:
    """8 producers post batches from many clients; `stop()` is called once `enough` were acknowledged.

    Returns the acknowledged event ids (202 answers only).
    """

    async def load() -> set[str]:
        acknowledged: set[str] = set()
        reached = asyncio.Event()

        async def producer(n: int, client: httpx.AsyncClient) -> None:
            for round_ in range(200):
                try:
                    response = await client.post(
                        "/api/events",
                        content=orjson.dumps([SEED_EXAMPLE] * 5),
                        headers={"Content-Type": "application/json", "X-Forwarded-For": f"10.0.{n}.{round_ % 250}"},
                    )
                except httpx.TransportError:
                    return  # the host went away: this producer is done
                if response.status_code == 202:
                    acknowledged.update(r["eventId"] for r in response.json()["results"])
                    if len(acknowledged) >= enough:
                        reached.set()

        async with httpx.AsyncClient(base_url=host.url, timeout=10) as client:
            producers = [asyncio.create_task(producer(n, client)) for n in range(8)]
            await asyncio.wait_for(reached.wait(), timeout=60)
            stop()
            await asyncio.gather(*producers)
        return acknowledged

    return asyncio.run(load())


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_under_load_loses_no_acknowledged_event(
    host_factory: Callable[..., LocalHost], stop_signal: int
) -> None:
    # GIVEN a host taking a steady stream of batches from many clients
    host = host_factory(CLOUDSCALE_TRUSTED_PROXIES="127.0.0.1", **INGEST_ONLY)
    # WHEN the host is told to stop in the middle of it
    acknowledged = produce_until_stopped(host, lambda: host.process.send_signal(stop_signal))
    exit_code = host.stop()

    # THEN it exits cleanly and every event it acknowledged is in the queue
    assert exit_code == 0, "".join(host.output)
    assert "Traceback" not in "".join(host.output)
    assert len(acknowledged) >= 300
    assert {event_message_id("acme", event_id) for event_id in acknowledged} <= set(queued(host))


# The killed host's change-feed leases pass to the restarted one (a new owner) only once they
# expire, as on Azure: up to a minute of waiting on top of the load, more than the default bound.
@pytest.mark.timeout(300)
def test_a_crash_under_load_loses_nothing_and_stores_and_analyses_each_event_once(
    host_factory: Callable[..., LocalHost],
) -> None:
    # GIVEN the whole pipeline under load
    # (a 2 s lock, so the messages the killed host held come back soon; the retry budget fits it)
    settings = {
        "CLOUDSCALE_TRUSTED_PROXIES": "127.0.0.1",
        "CLOUDSCALE_QUEUE_LOCK_SECONDS": "2",
        "CLOUDSCALE_PROCESS_RETRY_SECONDS": "1.6",
    }
    host = host_factory(**settings)
    # WHEN it is killed outright (no graceful anything) mid-load, then started again
    acknowledged = produce_until_stopped(host, host.crash)
    assert host.stop() == -signal.SIGKILL
    restarted = host_factory(host.data_dir, **settings)

    # THEN every acknowledged event ends up stored (once: the store is keyed by eventId) and
    # nothing is dead-lettered
    deadline = time.monotonic() + 60
    while queued(restarted) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert queued(restarted) == {}, "the backlog did not drain after the restart"
    with contextlib.closing(sqlite3.connect(host.data_dir / "events.sqlite3")) as store:
        stored = [row[0] for row in store.execute("SELECT event_id FROM events")]
    assert len(acknowledged) >= 300
    assert acknowledged <= set(stored)
    with contextlib.closing(sqlite3.connect(host.data_dir / "queue.sqlite3")) as queue:
        assert queue.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0
    # AND every stored event reaches analytics, once (the feed resumes from its checkpoints:
    # the ranges whose leases the restarted host steals at once or at its next balancing, the
    # others once the killed host's leases expired)
    defaults = FeedTimings()
    deadline = time.monotonic() + defaults.expiration_interval + defaults.acquire_interval + 30
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(host.data_dir / "analytics.sqlite3")) as analytics:
            in_analytics = [row[0] for row in analytics.execute("SELECT EventId FROM events")]
        if len(in_analytics) >= len(stored):
            break
        time.sleep(0.2)
    assert sorted(in_analytics) == sorted(stored)


def test_the_bare_endpoint_is_served_only_when_asked(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.e2e.conftest import start_host

    plain = start_host(tmp_path_factory.mktemp("data"))
    bench = start_host(tmp_path_factory.mktemp("data"), "--bare-endpoint")
    try:
        with plain.client() as client:
            assert client.post("/_bench/bare", content=b"{}").status_code == 404
        with bench.client() as client:
            response = client.post("/_bench/bare", content=orjson.dumps([SEED_EXAMPLE] * 10))
            assert response.status_code == 202
            assert response.content == b"{}"
        assert "benchmark ceiling" in "".join(bench.output)
    finally:
        plain.stop()
        bench.stop()


def test_a_host_restarted_after_a_crash_does_not_refuse_requests_under_the_global_limit(
    host_factory: Callable[..., LocalHost],
) -> None:
    # GIVEN a host with a global limit of 600 a minute that has admitted 100 requests, and so
    # claimed most of what is left of the window for itself
    settings = {
        "CLOUDSCALE_TRUSTED_PROXIES": "127.0.0.1/32",
        "CLOUDSCALE_RATE_LIMIT_GLOBAL_PER_MINUTE": "600",
        **INGEST_ONLY,
    }
    host = host_factory(**settings)
    with host.client() as client:
        before = [post(client, SEED_EXAMPLE, f"198.51.100.{n}").status_code for n in range(100)]
        time.sleep(1.5)  # at least one exchange of the window and the claims
        post(client, SEED_EXAMPLE, "198.51.100.200")

    # WHEN it is killed and started again at once on the same data
    host.crash()
    host.stop()
    restarted = host_factory(host.data_dir, **settings)

    # THEN over the next sync intervals it admits what the window has room for (101 + 300 < 600):
    # its predecessor's claim is not held against it
    statuses: list[int] = []
    with restarted.client() as client:
        deadline = time.monotonic() + 3.5
        n = 0
        while time.monotonic() < deadline and n < 300:
            statuses.append(post(client, SEED_EXAMPLE, f"192.0.2.{n % 250}").status_code)
            n += 1
            time.sleep(0.01)
    assert before == [202] * 100
    assert statuses.count(429) == 0, f"{statuses.count(429)} of {len(statuses)} refused"


def test_a_host_whose_queue_file_was_emptied_refuses_to_start_naming_the_file(
    host_factory: Callable[..., LocalHost],
) -> None:
    # GIVEN a host that acknowledged events, then was stopped
    host = host_factory(**INGEST_ONLY)
    with host.client() as client:
        assert post(client, [SEED_EXAMPLE] * 3, "203.0.113.7").status_code == 202
    host.stop()
    # WHEN its queue file is emptied (as a bad copy or a cut-short restore would leave it)
    queue_file = host.data_dir / "queue.sqlite3"
    for suffix in ("-wal", "-shm"):
        queue_file.with_name(queue_file.name + suffix).unlink(missing_ok=True)
    queue_file.write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "-m", "cloudscale_local.cli.main", "run", "--port", "0"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "CLOUDSCALE_DATA_DIR": str(host.data_dir), **INGEST_ONLY},
        capture_output=True,
        text=True,
        timeout=60,
    )

    # THEN it does not start as if nothing happened: it names the file and what to do, no traceback
    assert result.returncode != 0
    assert "has lost acknowledged messages" in result.stderr
    assert str(queue_file) in result.stderr
    assert "Traceback" not in result.stderr
    assert "listening" not in result.stdout


@pytest.mark.parametrize("store_file", ["events.sqlite3", "ratelimit.sqlite3", "analytics.sqlite3"])
def test_a_damaged_store_file_stops_the_host_with_a_message_naming_it(
    tmp_path_factory: pytest.TempPathFactory, store_file: str
) -> None:
    data_dir = tmp_path_factory.mktemp("data")
    (data_dir / store_file).write_bytes(b"not a database at all " * 200)
    result = subprocess.run(
        [sys.executable, "-m", "cloudscale_local.cli.main", "run", "--port", "0"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "CLOUDSCALE_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"{data_dir / store_file} is not a usable SQLite database" in result.stderr
    assert "Traceback" not in result.stderr
