"""host.json's HTTP request queue in the local host, as the Functions host applies it.

`maxConcurrentRequests` run at once and the others wait; past `maxOutstandingRequests` (running
plus waiting) a request is refused at once with 429, an empty body and `X-FUNCTION-SCALEOUT: 1`
(azure-functions-host: `HttpRequestQueue.cs`, `HttpThrottleMiddleware.cs`).
"""

from __future__ import annotations

import asyncio
import socket

import azure.functions as func
import httpx
import uvicorn

from cloudscale_local.host.functions import HttpFunction
from cloudscale_local.host.gateway import DRAIN_LIMIT_BYTES, Gateway, HostEndpoint, PlainResponse
from cloudscale_local.host.http_limits import HttpLimits, bounded_protocol
from cloudscale_local.host.request_queue import RequestQueue
from cloudscale_local.host.routing import RouteTemplate
from tests.waiting import wait_until


class SlowFunction:
    """An HTTP function that holds every call until released, counting how many run at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.running = 0
        self.most_at_once = 0

    async def hold(self) -> func.HttpResponse:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        return func.HttpResponse(b"{}", status_code=202, mimetype="application/json")

    def as_function(self) -> HttpFunction:
        async def ingest_events(req: func.HttpRequest) -> func.HttpResponse:
            return await self.hold()

        return HttpFunction("ingest_events", RouteTemplate.compile("events"), ("POST",), ingest_events, "req")


async def metrics() -> PlainResponse:
    return PlainResponse(200, b"# metrics\n", "text/plain")


def client_for(gateway: Gateway) -> httpx.AsyncClient:
    # The gateway types its scope as a dict, httpx as any mutable mapping: the same ASGI app.
    transport = httpx.ASGITransport(app=gateway, client=("127.0.0.1", 50000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:7071", timeout=10)


async def test_past_the_outstanding_limit_a_request_gets_429_at_once_and_the_queued_ones_finish() -> None:
    # GIVEN one request at a time and two outstanding, with the first running and the second waiting
    slow = SlowFunction()
    queue = RequestQueue(max_concurrent=1, max_outstanding=2)
    endpoints = {"/metrics": HostEndpoint(metrics, frozenset({"GET"}))}
    async with client_for(Gateway([slow.as_function()], host_endpoints=endpoints, request_queue=queue)) as client:
        first = asyncio.create_task(client.post("/api/events", content=b"{}"))
        second = asyncio.create_task(client.post("/api/events", content=b"{}"))
        await wait_until(lambda: queue.outstanding == 2 and slow.running == 1)

        # WHEN a third arrives
        refused = await client.post("/api/events", content=b"{}")
        # (the host's own endpoints are outside the queue, as the host's admin API is)
        scraped = await client.get("/metrics")

        # THEN it is refused as the host refuses it, and the two queued ones complete once released
        assert refused.status_code == 429
        assert refused.headers["x-function-scaleout"] == "1"
        assert "retry-after" not in refused.headers
        assert refused.content == b""
        assert scraped.status_code == 200
        slow.release.set()
        assert [(await first).status_code, (await second).status_code] == [202, 202]
    assert slow.most_at_once == 1
    assert queue.outstanding == 0


async def test_with_only_a_concurrency_limit_requests_wait_their_turn_and_none_is_refused() -> None:
    slow = SlowFunction()
    queue = RequestQueue(max_concurrent=2)
    async with client_for(Gateway([slow.as_function()], request_queue=queue)) as client:
        calls = [asyncio.create_task(client.post("/api/events", content=b"{}")) for _ in range(6)]
        await wait_until(lambda: queue.outstanding == 6 and slow.running == 2)
        slow.release.set()
        statuses = [(await call).status_code for call in calls]

    assert statuses == [202] * 6
    assert slow.most_at_once == 2


async def test_without_limits_the_queue_is_off_and_every_request_runs_at_once() -> None:
    slow = SlowFunction()
    queue = RequestQueue()
    async with client_for(Gateway([slow.as_function()], request_queue=queue)) as client:
        calls = [asyncio.create_task(client.post("/api/events", content=b"{}")) for _ in range(20)]
        await wait_until(lambda: slow.running == 20)
        slow.release.set()
        statuses = [(await call).status_code for call in calls]

    assert not queue.enabled
    assert statuses == [202] * 20


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """One HTTP/1.1 answer's status and headers (lower-cased), its body read to its Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:] if line)
    }
    await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split(" ", 2)[1]), headers


async def test_a_refused_request_with_a_small_body_keeps_its_connection_and_a_large_one_closes_it() -> None:
    # GIVEN the gateway on a real uvicorn socket, with its one slot and one place taken
    slow = SlowFunction()
    queue = RequestQueue(max_concurrent=1, max_outstanding=1)
    endpoints = {"/metrics": HostEndpoint(metrics, frozenset({"GET"}))}
    gateway = Gateway([slow.as_function()], host_endpoints=endpoints, request_queue=queue)
    config = uvicorn.Config(gateway, lifespan="off", log_level="warning", http=bounded_protocol(HttpLimits()))
    server = uvicorn.Server(config)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        await wait_until(lambda: server.started)
        address = listener.getsockname()
        async with httpx.AsyncClient(base_url=f"http://{address[0]}:{address[1]}", timeout=10) as client:
            holding = asyncio.create_task(client.post("/api/events", content=b"{}"))
            await wait_until(lambda: slow.running == 1)
            reader, writer = await asyncio.open_connection(*address)

            # WHEN a request with a small body is refused
            body = b'{"eventId": "e-1"}'
            writer.write(b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            status, headers = await _read_answer(reader)
            # THEN it gets 429 and the connection stays open: the next request on it is answered
            assert status == 429
            assert headers.get("connection") != "close"
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await _read_answer(reader))[0] == 200

            # WHEN a small body is declared but does not come (a slow client, or one awaiting 100-continue)
            slow_reader, slow_writer = await asyncio.open_connection(*address)
            slow_writer.write(b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            status, headers = await _read_answer(slow_reader)
            # THEN it is not waited for: 429, and the connection closes instead of being held
            assert status == 429
            assert headers["connection"] == "close"
            assert await asyncio.wait_for(slow_reader.read(), 5) == b""
            slow_writer.close()

            # WHEN a request declaring a body too large to drain is refused
            too_large = DRAIN_LIMIT_BYTES + 1
            writer.write(b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n{" % too_large)
            status, headers = await _read_answer(reader)
            # THEN the connection is closed instead of reading the rest
            assert status == 429
            assert headers["connection"] == "close"
            assert await reader.read() == b""
            writer.close()
            slow.release.set()
            assert (await holding).status_code == 202
    finally:
        server.should_exit = True
        await serving
        listener.close()
