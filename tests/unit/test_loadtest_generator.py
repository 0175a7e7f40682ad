"""The generator against a stub HTTP server on loopback: open loop, addresses, batches, workers."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

import cloudscale_local.loadtest.worker
from cloudscale_local.loadtest import LoadConfig, Progress, run_load


@dataclass
class Stub:
    """An HTTP server on 127.0.0.1 in a thread of its own, answering like the ingest API."""

    delay: float = 0.0
    status_for: Callable[[int], int] = lambda n: 202
    bare: bool = False
    """Answer 200 with a plain body, like a bare endpoint."""
    received: list[Any] = field(default_factory=list)
    forwarded_for: list[str] = field(default_factory=list)
    concurrent: int = 0
    max_concurrent: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            body = orjson.loads(await request.read())
            self.received.append(body)
            self.forwarded_for.append(request.headers["X-Forwarded-For"])
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.bare:
                return web.Response(text="ok")
            status = self.status_for(len(self.received))
            if status != 202:
                return web.json_response({"error": "nope"}, status=status)
            events = body if isinstance(body, list) else [body]
            results = [{"index": n, "status": "accepted", "eventId": e["eventId"]} for n, e in enumerate(events)]
            return web.json_response({"accepted": len(events), "rejected": 0, "results": results}, status=202)
        finally:
            self.concurrent -= 1


@pytest.fixture
def serve() -> Iterator[Callable[..., Stub]]:
    """Start stub servers; all are stopped at the end of the test."""
    stops: list[Callable[[], None]] = []

    def start(**options: Any) -> Stub:
        stub = Stub(**options)
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/api/events", stub.handle)
        runner = web.AppRunner(app)

        async def up() -> None:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            stub.url = f"http://{host}:{port}"

        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        asyncio.run_coroutine_threadsafe(up(), loop).result(timeout=10)

        def stop() -> None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()

        stops.append(stop)
        return stub

    yield start
    for stop in stops:
        stop()


def test_a_slow_service_does_not_slow_the_sends(serve: Callable[..., Stub]) -> None:
    # Every answer takes 0.4 s; at 40 requests/s a closed loop would send a few a second.
    stub = serve(delay=0.4)
    report = run_load(LoadConfig(url=stub.url, duration=1, target_rps=40, drain_seconds=0))
    assert report.requests_scheduled == report.requests_sent == 40
    assert report.status_counts == {"202": 40}
    assert stub.max_concurrent > 5  # many requests were out at once: nobody waited for an answer
    assert report.ingest_latency_ms.count == 40
    assert report.ingest_latency_ms.p50 is not None
    assert report.ingest_latency_ms.p50 >= 400  # the server's own delay is a floor
    assert report.end_to_end.measured is False


def test_requests_cycle_through_the_client_addresses(serve: Callable[..., Stub]) -> None:
    stub = serve()
    run_load(LoadConfig(url=stub.url, duration=0.5, target_rps=40, ips=5, drain_seconds=0))
    assert Counter(stub.forwarded_for) == {f"10.0.0.{n}": 4 for n in range(1, 6)}


def test_batches_are_arrays_and_every_accepted_event_counts(serve: Callable[..., Stub]) -> None:
    stub = serve()
    report = run_load(LoadConfig(url=stub.url, duration=0.5, target_rps=20, batch_size=3, drain_seconds=0))
    assert all(isinstance(body, list) and len(body) == 3 for body in stub.received)
    assert report.events_sent == report.events_accepted == 30
    assert report.accepted_events_per_second == 60.0
    event_ids = [event["eventId"] for body in stub.received for event in body]
    assert len(set(event_ids)) == 30


def test_answers_are_counted_by_status(serve: Callable[..., Stub]) -> None:
    stub = serve(status_for=lambda n: {3: 429, 7: 503, 9: 400}.get(n, 202))
    report = run_load(LoadConfig(url=stub.url, duration=0.5, target_rps=20, drain_seconds=0))
    assert report.status_counts == {"202": 7, "400": 1, "429": 1, "503": 1}
    assert report.events_accepted == 7
    assert report.ingest_latency_ms.count == 10
    # Latencies by status too: under overload the 202s and the refusals are told apart.
    assert {status: summary.count for status, summary in report.latency_by_status_ms.items()} == {
        "202": 7,
        "400": 1,
        "429": 1,
        "503": 1,
    }


def test_a_bare_endpoint_is_measured_without_counting_events(serve: Callable[..., Stub]) -> None:
    stub = serve(bare=True)
    report = run_load(LoadConfig(url=stub.url, duration=0.5, target_rps=20, drain_seconds=0))
    assert report.status_counts == {"200": 10}
    assert report.events_accepted == 0
    assert report.ingest_latency_ms.count == 10


def test_the_in_flight_cap_holds_sends_back_and_counts_them_late(
    serve: Callable[..., Stub], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cloudscale_local.loadtest.worker, "max_in_flight_for", lambda rate: 2)
    stub = serve(delay=0.3)
    report = run_load(LoadConfig(url=stub.url, duration=0.5, target_rps=20, drain_seconds=0))
    assert stub.max_concurrent <= 2
    assert report.behind_schedule.in_flight_cap_hits > 0
    assert report.behind_schedule.late_sends > 0
    assert report.kept_up is False
    assert report.fell_behind_reason()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_nothing_listening_is_counted_as_transport_errors() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    report = run_load(LoadConfig(url=url, duration=0.5, target_rps=10, drain_seconds=0))
    assert report.requests_sent == 5
    assert report.status_counts == {"error": 5}
    assert sum(report.error_kinds.values()) == 5
    assert report.ingest_latency_ms.count == 0
    assert report.events_accepted == 0


def test_workers_in_processes_split_the_rate_and_merge_their_results(serve: Callable[..., Stub]) -> None:
    stub = serve()
    progress: list[Progress] = []
    report = run_load(
        LoadConfig(url=stub.url, duration=1, target_rps=30, workers=3, drain_seconds=0), on_progress=progress.append
    )
    assert report.workers == 3
    assert report.requests_scheduled == report.requests_sent == 30
    assert report.status_counts == {"202": 30}
    assert report.ingest_latency_ms.count == 30
    assert report.latency_by_status_ms["202"].count == 30
    event_ids = [body["eventId"] for body in stub.received]
    assert len(set(event_ids)) == 30
    assert report.generator_cpu_seconds > 0
    assert progress
    assert progress[-1].sent == 30
    assert progress[-1].ok == 30


async def test_it_can_be_called_from_a_coroutine(serve: Callable[..., Stub]) -> None:
    stub = serve()
    report = run_load(LoadConfig(url=stub.url, duration=0.5, target_rps=10, drain_seconds=0))
    assert report.status_counts == {"202": 5}
