"""Several instances on one port: real processes, a real socket, instances killed for real.

`cloudscale run --instances 2` runs a supervisor and two instance processes (its children,
found through /proc). Each test kills or stops them as an operator or a crash would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cloudscale_local.host.ncrontab import CronSchedule
from tests.e2e.conftest import INGEST_ONLY, REPO, LocalHost, start_host
from tests.e2e.test_ingest_api import SEED_EXAMPLE

pytestmark = pytest.mark.e2e

TWO = ("--instances", "2")
TIMER = "reconcile_analytics"
TIMER_SCHEDULE = "0 15 * * * *"


@pytest.fixture
def hosts() -> Iterator[Callable[..., LocalHost]]:
    """Start `cloudscale run --instances 2` hosts; every one is stopped at the end of the test."""
    started: list[LocalHost] = []

    def start(data_dir: Path, *args: str, **settings: str) -> LocalHost:
        host = start_host(data_dir, *TWO, *args, **settings)
        started.append(host)
        return host

    yield start
    for host in started:
        host.stop()


def wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not in {within} s"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        return b"zombie" not in Path(f"/proc/{pid}/status").read_bytes().lower()
    except FileNotFoundError:
        return False


def accepted_total(text: str) -> float:
    """`cloudscale_events_ingested_total{outcome="accepted"}` in a Prometheus text."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "cloudscale_events_ingested_total" and sample.labels.get("outcome") == "accepted"
    )


def scrape(host: LocalHost) -> float:
    """The accepted total from /metrics, on a new connection (so any instance may answer)."""
    return accepted_total(httpx.get(f"{host.url}/metrics", timeout=10).text)


def snapshots(host: LocalHost) -> dict[str, float]:
    """Each instance's accepted count, as its last metrics snapshot says."""
    return {
        path.stem: accepted_total(path.read_text())
        for path in host.data_dir.glob("instances/metrics-*/instance-*.prom")
    }


def post_events(host: LocalHost, count: int, client_offset: int = 0) -> int:
    """Post `count` single events, each on a connection of its own (spread over the instances); the 202s."""

    async def run() -> int:
        accepted = 0
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=host.url, timeout=10, limits=limits) as client:

            async def one(n: int) -> None:
                nonlocal accepted
                response = await client.post(
                    "/api/events",
                    content=orjson.dumps(SEED_EXAMPLE),
                    headers={"Content-Type": "application/json", "X-Forwarded-For": f"10.1.{n // 250}.{n % 250}"},
                )
                accepted += response.status_code == 202

            for start in range(0, count, 16):
                await asyncio.gather(*(one(client_offset + n) for n in range(start, min(start + 16, count))))
        return accepted

    return asyncio.run(run())


def test_every_instance_serves_and_metrics_show_their_totals_which_survive_a_kill(
    hosts: Callable[..., LocalHost], tmp_path: Path
) -> None:
    # GIVEN two instances taking requests on one port, each on a connection of its own
    host = hosts(tmp_path, CLOUDSCALE_TRUSTED_PROXIES="127.0.0.1", **INGEST_ONLY)
    assert "instances: 2" in "".join(host.output)
    assert len(host.instance_pids()) == 2
    accepted = post_events(host, 200)
    assert accepted == 200

    # THEN both instances served some of them
    wait_for(lambda: sum(snapshots(host).values()) == accepted, 10, "snapshots of every count")
    per_instance = snapshots(host)
    assert len(per_instance) == 2
    assert all(count > 0 for count in per_instance.values()), per_instance
    # AND /metrics, whichever instance answers, shows the total
    assert [scrape(host) for _ in range(5)] == [accepted] * 5

    # WHEN one instance is killed outright
    victim = host.instance_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not alive(victim), 10, "the instance dies")
    # THEN what it counted stays in the totals (no counter goes backwards)
    assert [scrape(host) for _ in range(5)] == [accepted] * 5

    # WHEN its replacement serves too, and more events come
    wait_for(lambda: len(host.instance_pids()) == 2, 30, "a replacement instance")
    wait_for(lambda: len(snapshots(host)) == 3, 30, "the replacement serves")
    more = post_events(host, 100, client_offset=1000)
    # THEN the totals add up over all three instances of the run
    wait_for(lambda: scrape(host) == accepted + more, 10, "the totals catch up")


def test_an_instance_killed_mid_load_loses_nothing_the_other_keeps_answering_and_it_is_replaced(
    hosts: Callable[..., LocalHost], tmp_path: Path
) -> None:
    # GIVEN the whole pipeline on two instances under load
    # (a 3 s lock, so the batch the killed instance held comes back soon; the retry budget fits it)
    host = hosts(
        tmp_path,
        CLOUDSCALE_TRUSTED_PROXIES="127.0.0.1",
        CLOUDSCALE_QUEUE_LOCK_SECONDS="3",
        CLOUDSCALE_PROCESS_RETRY_SECONDS="2.4",
    )
    victim = host.instance_pids()[0]
    killed_at: list[float] = []
    replaced_at: list[float] = []
    acknowledged: dict[str, float] = {}

    async def load() -> None:
        under_load = asyncio.Event()

        async def producer(n: int, client: httpx.AsyncClient) -> None:
            round_ = 0
            while len(acknowledged) < 1500 or not replaced_at:
                round_ += 1
                try:
                    response = await client.post(
                        "/api/events",
                        content=orjson.dumps([SEED_EXAMPLE] * 5),
                        headers={"Content-Type": "application/json", "X-Forwarded-For": f"10.2.{n}.{round_ % 250}"},
                    )
                except httpx.TransportError:
                    continue  # a connection to the killed instance: not acknowledged, try again
                if response.status_code == 202:
                    now = time.monotonic()
                    acknowledged.update((r["eventId"], now) for r in response.json()["results"])
                    if len(acknowledged) >= 300:
                        under_load.set()

        async def kill_then_watch() -> None:
            await under_load.wait()
            os.kill(victim, signal.SIGKILL)
            killed_at.append(time.monotonic())
            # The replacement serves once it has written its first metrics snapshot.
            while len(snapshots(host)) < 3:  # noqa: ASYNC110 - files another process writes: polled
                await asyncio.sleep(0.02)
            replaced_at.append(time.monotonic())

        limits = httpx.Limits(max_keepalive_connections=4)
        async with httpx.AsyncClient(base_url=host.url, timeout=10, limits=limits) as client:
            await asyncio.wait_for(
                asyncio.gather(kill_then_watch(), *(producer(n, client) for n in range(8))), timeout=120
            )

    asyncio.run(load())

    # THEN the other instance kept answering while the killed one was being replaced
    assert any(killed_at[0] < at < replaced_at[0] for at in acknowledged.values())
    assert victim not in host.instance_pids()
    assert len(host.instance_pids()) == 2
    assert "was killed by SIGKILL; starting another" in "".join(host.output)
    # AND every acknowledged event is stored (the killed instance's locked batch came back
    # once its lock expired), none dead-lettered
    events = tmp_path / "events.sqlite3"

    def stored() -> set[str]:
        with contextlib.closing(sqlite3.connect(events)) as store:
            return {row[0] for row in store.execute("SELECT event_id FROM events")}

    wait_for(lambda: set(acknowledged) <= stored(), 60, "every acknowledged event stored")
    with contextlib.closing(sqlite3.connect(tmp_path / "queue.sqlite3")) as queue:
        assert queue.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0
    # AND the totals never exceed what was acknowledged (counts from the killed instance's
    # last second may be missing: docs/architecture.md)
    assert scrape(host) <= len(acknowledged)


def test_sigint_stops_every_instance_frees_the_port_and_exits_0(
    hosts: Callable[..., LocalHost], tmp_path: Path
) -> None:
    host = hosts(tmp_path, **INGEST_ONLY)
    pids = host.instance_pids()
    port = int(host.url.rsplit(":", 1)[1])
    assert len(pids) == 2

    assert host.stop(signal.SIGINT) == 0

    assert not any(alive(pid) for pid in pids)
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))
    assert "Traceback" not in "".join(host.output)
    assert not list(tmp_path.glob("instances/metrics-*"))  # the run's snapshots go with it


def post_on_keep_alive_connections(host: LocalHost, connections: int, requests_each: int) -> int:
    """Open `connections` at once, as wrk does, then post `requests_each` events on each, kept alive; the 202s."""
    port = int(host.url.rsplit(":", 1)[1])
    body = orjson.dumps(SEED_EXAMPLE)
    accepted = 0
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10)) for _ in range(connections)
        ]
        for round_number in range(requests_each):
            for number, sock in enumerate(sockets):
                head = (
                    f"POST /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"X-Forwarded-For: 10.3.{round_number}.{number}\r\nContent-Length: {len(body)}\r\n\r\n"
                )
                sock.sendall(head.encode("ascii") + body)
            for sock in sockets:
                accepted += _read_status(sock) == 202
    return accepted


def _read_status(sock: socket.socket) -> int:
    """The status of one HTTP/1.1 answer, whose body is read to its end (its Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split(b" ", 2)[1])


def test_keep_alive_connections_opened_at_once_are_spread_over_the_instances(
    hosts: Callable[..., LocalHost], tmp_path: Path
) -> None:
    # GIVEN two instances (the pipeline's stages off: only who answers matters here)
    host = hosts(tmp_path, **INGEST_ONLY)
    # WHEN a client opens 32 connections at once and keeps posting on them, as wrk does
    accepted = post_on_keep_alive_connections(host, connections=32, requests_each=3)
    assert accepted == 96
    # THEN both instances answered some (one socket shared by both let the first to wake take all 32)
    wait_for(lambda: sum(snapshots(host).values()) == accepted, 10, "both snapshots count every 202")
    per_instance = snapshots(host)
    assert len(per_instance) == 2
    assert all(count > 0 for count in per_instance.values()), per_instance


def test_a_second_run_on_the_same_port_is_a_clear_error(hosts: Callable[..., LocalHost], tmp_path: Path) -> None:
    # GIVEN a run serving a port
    host = hosts(tmp_path / "first", **INGEST_ONLY)
    port = int(host.url.rsplit(":", 1)[1])
    # WHEN a second run asks for the same port (its sockets would join the first's with SO_REUSEPORT)
    refused = run_on_taken_port(port, tmp_path / "second")
    # THEN it stops at once, naming the port, and the first run still answers
    assert_port_refused(refused, port)
    assert httpx.get(f"{host.url}/metrics", timeout=10).status_code == 200


def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = run_on_taken_port(port, tmp_path)
    assert_port_refused(refused, port)


def run_on_taken_port(port: int, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """`cloudscale run --port <port> --instances 2`, to its end."""
    return subprocess.run(
        [sys.executable, "-m", "cloudscale_local.cli.main", "run", "--port", str(port), *TWO],
        cwd=REPO,
        env={"CLOUDSCALE_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_port_refused(result: subprocess.CompletedProcess[str], port: int) -> None:
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def past_due_status(now: datetime) -> dict[str, str]:
    """A recorded schedule status whose next occurrence has passed: the timer runs at once, past due."""
    schedule = CronSchedule.parse(TIMER_SCHEDULE)
    last = schedule.next_after(now - timedelta(hours=3))
    assert last is not None
    due = schedule.next_after(last)
    assert due is not None
    return {"Last": last.isoformat(), "Next": due.isoformat(), "LastUpdated": last.isoformat()}


def timer_runs(trace_file: Path) -> list[str]:
    """The instance (`service.instance.id`) of each run of the timer function, in the trace file."""
    runs = []
    for line in trace_file.read_text().splitlines() if trace_file.exists() else []:
        span = json.loads(line)
        if span["name"] == TIMER and span["attributes"].get("faas.trigger") == "timer":
            runs.append(span["resource"]["attributes"]["service.instance.id"])
    return runs


def test_a_timer_runs_on_one_instance_only_and_moves_to_another_when_its_holder_is_killed(
    hosts: Callable[..., LocalHost], tmp_path: Path
) -> None:
    # GIVEN a timer that missed an occurrence, so whichever instance runs it runs it at once
    status = tmp_path / "timers" / f"{TIMER}.json"
    status.parent.mkdir(parents=True)
    status.write_text(json.dumps(past_due_status(datetime.now(UTC))))
    trace_file = tmp_path / "spans.jsonl"

    # WHEN two instances start
    host = hosts(tmp_path, "--trace-file", str(trace_file), **INGEST_ONLY)

    # THEN one of them runs it, once
    wait_for(lambda: len(timer_runs(trace_file)) >= 1, 30, "the past-due timer runs")
    time.sleep(2)  # an observation window: a second instance running it would do so at once
    runs = timer_runs(trace_file)
    assert len(runs) == 1, runs
    holder = int(runs[0].rsplit("pid", 1)[1])
    assert holder in host.instance_pids()

    # WHEN the holder is killed while another occurrence is past due
    status.write_text(json.dumps(past_due_status(datetime.now(UTC))))
    os.kill(holder, signal.SIGKILL)

    # THEN another instance takes the timer over and runs it, once
    wait_for(lambda: len(timer_runs(trace_file)) >= 2, 30, "the timer moves to another instance")
    time.sleep(2)
    runs = timer_runs(trace_file)
    assert len(runs) == 2, runs
    assert runs[1] != runs[0]


SERVE_AN_APP_THAT_FAILS_IN_INSTANCES = """
import os, sys
from cloudscale_local.host import HostOptions, serve
from cloudscale_local.host.instances import InstanceStartError
try:
    serve(HostOptions(port=0, app_module="tests.e2e.instance_failing_app", instances=2), os.environ)
except InstanceStartError as exc:
    print(f"stopped: {exc}", flush=True)
    sys.exit(3)
"""


def test_instances_that_keep_failing_at_startup_stop_the_run_with_their_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SERVE_AN_APP_THAT_FAILS_IN_INSTANCES],
        cwd=REPO,
        env={**os.environ, "CLOUDSCALE_DATA_DIR": str(tmp_path), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stdout.strip() == (
        "stopped: instances failed 3 times in a row before serving: "
        "RuntimeError: this instance cannot start (on purpose)"
    )
    # one traceback, the last instance's, not one per attempt
    assert result.stderr.count("Traceback") == 1
    assert "listening on" not in result.stdout


SERVE_AN_APP_WHOSE_REPLACEMENTS_FAIL = """
import os, sys
from cloudscale_local.host import HostOptions, serve
serve(HostOptions(port=0, app_module="tests.e2e.instance_failing_later_app", instances=2), os.environ)
"""


def test_a_replacement_that_cannot_start_leaves_the_serving_instances_serving(tmp_path: Path) -> None:
    # GIVEN a run of two instances, serving
    marker = tmp_path / "fail-from-now-on"
    env = {
        **os.environ,
        "CLOUDSCALE_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(REPO),
        "CLOUDSCALE_TEST_FAIL_MARKER": str(marker),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_AN_APP_WHOSE_REPLACEMENTS_FAIL],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = ""
        while not url:
            line = process.stdout.readline()
            assert line, "the run ended before serving"
            if "listening on" in line:
                url = line.split("listening on", 1)[1].strip()
        host = LocalHost(process, url, tmp_path / "data")
        first, second = host.instance_pids()
        # WHEN one instance dies and its replacements cannot start
        marker.touch()
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: not alive(first), 10, "the instance dies")
        time.sleep(3)  # an observation window: at least one replacement fails meanwhile
        # THEN the run goes on: the other instance still answers (a connection that reached a
        # replacement's socket while it was starting is reset when it fails, and is tried again)
        assert process.poll() is None
        assert _ping_until_answered(url) == str(second)
        # AND once replacements can start again, one does
        marker.unlink()
        wait_for(lambda: len(host.instance_pids()) == 2, 60, "a replacement instance")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        if process.stdout is not None:
            process.stdout.close()


def _ping_until_answered(url: str) -> str:
    """`GET /api/ping`'s answer, trying again (a few times) when the connection is reset or times out."""
    for _ in range(10):
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"{url}/api/ping", timeout=5).text
    raise AssertionError("no instance answered /api/ping in 10 tries")
