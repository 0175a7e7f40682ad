"""The local host's HTTP layer over a raw socket: abandoned, oversized, slow and too many requests."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

from tests.e2e.conftest import INGEST_ONLY, LocalHost, start_host, start_host_with_fd_limit
from tests.e2e.test_ingest_api import SEED_EXAMPLE, new_ip, post, queued

pytestmark = pytest.mark.e2e

READ_TIMEOUT = 1.0
"""The host's --read-timeout in these tests: short, so a slow client is cut off quickly."""

CAPACITY = 10


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    """An ingest-only host with a short read timeout, trusting loopback to name client addresses."""
    running = start_host(
        tmp_path_factory.mktemp("data"),
        "--read-timeout",
        str(READ_TIMEOUT),
        CLOUDSCALE_TRUSTED_PROXIES="127.0.0.1/32",
        CLOUDSCALE_RATE_LIMIT_IP_CAPACITY=str(CAPACITY),
        **INGEST_ONLY,
    )
    yield running
    running.stop()


def address(host: LocalHost) -> tuple[str, int]:
    parts = urlsplit(host.url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def connect(host: LocalHost, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(address(host), timeout=timeout)


def head(path: str, ip: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"X-Forwarded-For: {ip}", *headers, "", ""]
    return "\r\n".join(lines).encode()


def read_status(sock: socket.socket) -> int | None:
    """The status of the response on `sock`; None if the server closed or reset without one."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    if not data:
        return None
    return int(data.split(b" ", 2)[1])


def remaining(host: LocalHost, ip: str) -> int:
    """The client's bucket after one more (accepted) request."""
    with host.client() as client:
        response = post(client, SEED_EXAMPLE, ip)
    assert response.status_code == 202, response.text
    return int(response.headers["RateLimit-Remaining"])


def ingested_from(host: LocalHost, correlation_id: str) -> list[dict[str, object]]:
    events = [orjson.loads(message.body)["event"] for message in queued(host).values()]
    return [event for event in events if event["correlationId"] == correlation_id]


def test_a_body_cut_short_by_a_disconnect_is_not_ingested(host: LocalHost) -> None:
    # GIVEN a whole event whose request promises more: once a Content-Length 10 bytes longer,
    # once a chunked body without its last chunk; the client leaves without sending the rest
    ip = new_ip()
    body = orjson.dumps({**SEED_EXAMPLE, "correlationId": "abandoned"})
    with connect(host) as sock:
        sock.sendall(head("/api/events", ip, "Content-Type: application/json", f"Content-Length: {len(body) + 10}"))
        sock.sendall(body)
        time.sleep(0.3)  # the host has the event in hand before the client leaves
    with connect(host) as sock:
        sock.sendall(head("/api/events", ip, "Content-Type: application/json", "Transfer-Encoding: chunked"))
        sock.sendall(b"%x\r\n%s\r\n" % (len(body), body))
        time.sleep(0.3)
    time.sleep(0.3)  # the host has seen both disconnects

    # WHEN the same client then sends a whole one
    left = remaining(host, ip)

    # THEN neither incomplete request was ingested, and neither spent a token
    assert ingested_from(host, "abandoned") == []
    assert left == CAPACITY - 1


@pytest.mark.parametrize("in_one_write", [True, False], ids=["at-once", "streamed"])
def test_an_oversized_header_is_refused_with_431_before_it_is_read(host: LocalHost, in_one_write: bool) -> None:
    # GIVEN a request head of 40 KB at once, or of up to 8 MB streamed in 64 KB pieces
    start = head("/api/events", new_ip(), "Content-Type: application/json", "Content-Length: 2")[:-2]
    sent = 0
    status: int | None = None
    began = time.monotonic()
    with connect(host) as sock:
        try:
            if in_one_write:
                sock.sendall(start + b"X-Big: " + b"a" * 40_000 + b"\r\n\r\n{}")
            else:
                sock.sendall(start + b"X-Big: ")
                while sent < 8 * 1024 * 1024:
                    sock.sendall(b"a" * 65536)
                    sent += 65536
                sock.sendall(b"\r\n\r\n{}")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the host stopped reading, as it should
        status = read_status(sock)

    # THEN the host refused it quickly: 431, or a reset under the client's writes once it
    # closed the connection (how much the client got to send is up to the kernel's buffers)
    assert status in (431, None)
    assert time.monotonic() - began < 5


def test_a_body_declared_over_1_mib_gets_413_without_being_sent(host: LocalHost) -> None:
    ip = new_ip()
    with connect(host, timeout=READ_TIMEOUT / 2) as sock:
        # GIVEN a head declaring 2 MiB, and none of the body
        sock.sendall(head("/api/events", ip, "Content-Type: application/json", f"Content-Length: {2 * 1024 * 1024}"))

        # THEN the answer comes at once, well before the read timeout could give one, and the
        # connection is closed rather than left to carry the body
        status = read_status(sock)
        while sock.recv(4096):
            pass

    assert status == 413
    assert remaining(host, ip) == CAPACITY - 1


def test_a_chunked_body_over_1_mib_gets_413_as_it_passes_the_limit(host: LocalHost) -> None:
    piece = b"a" * 65536
    with connect(host) as sock:
        sock.sendall(head("/api/events", new_ip(), "Content-Type: application/json", "Transfer-Encoding: chunked"))
        try:
            for _ in range(64):  # 4 MiB at most
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        except (BrokenPipeError, ConnectionResetError):
            pass
        status = read_status(sock)

    assert status in (413, None)


def trickle_until_closed(sock: socket.socket, piece: bytes, deadline: float) -> tuple[bytes, bool]:
    """Send `piece` each turn (nothing if empty) and read, until the host closes or `deadline`.

    Returns what the host answered and whether it closed the connection in time.
    """
    answer = b""
    while time.monotonic() < deadline:
        try:
            if piece:
                sock.sendall(piece)
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return answer, True
        answer += chunk
        if not chunk:
            return answer, True
    return answer, False


@pytest.mark.parametrize("stage", ["idle", "headers", "body"])
def test_a_slow_client_is_cut_off_after_the_read_timeout(host: LocalHost, stage: str) -> None:
    # GIVEN a client that connects and then sends nothing, or its head or body a byte at a time
    ip = new_ip()
    began = time.monotonic()
    deadline = began + READ_TIMEOUT * 4
    with connect(host, timeout=0.2) as sock:
        if stage == "headers":
            sock.sendall(b"POST /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        if stage == "body":
            sock.sendall(head("/api/events", ip, "Content-Type: application/json", "Content-Length: 1000"))
        answer, closed = trickle_until_closed(sock, b"" if stage == "idle" else b"a", deadline)
        if not closed:
            pytest.fail(f"the host still held the connection after {READ_TIMEOUT * 4} s")

    # THEN the host closed it within the bound (with a 408 if it could still answer)
    assert time.monotonic() - began < READ_TIMEOUT * 3
    if stage == "idle":
        assert answer == b""  # no request, so no answer
    else:
        assert answer.startswith(b"HTTP/1.1 408 ") or answer == b""
    if stage == "body":
        assert remaining(host, ip) == CAPACITY - 1


def test_a_burst_at_the_file_descriptor_limit_logs_a_bounded_amount(tmp_path: Path) -> None:
    # GIVEN a host allowed 100 open files
    running = start_host_with_fd_limit(tmp_path, 100, **INGEST_ONLY)
    instances = len(running.instance_pids())
    try:
        # WHEN 300 clients connect at once and hold on for 2 s
        held: list[socket.socket] = []
        try:
            for _ in range(300):
                held.append(connect(running, timeout=2))
            time.sleep(2)
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.5)
        # THEN it still serves once they are gone
        with running.client() as client:
            assert client.get("/api/health").status_code in (200, 503)
    finally:
        running.stop()

    # AND each instance said so in a line, not a traceback per failed accept (the app's own
    # stores may log a retry a second while they cannot open their files)
    log = "".join(running.output)
    assert 1 <= log.count("accept() failed") <= instances, log[-3000:]
    assert "socket.accept()" not in log
    assert "_start_serving" not in log
    assert len(log.encode()) < 50_000


def test_a_body_trickled_below_240_bytes_a_second_is_cut_off_after_the_grace_period(tmp_path: Path) -> None:
    # GIVEN a host with the default 30 s read timeout, and a client sending its body at 40 bytes/s
    running = start_host(tmp_path, **INGEST_ONLY)
    try:
        began = time.monotonic()
        with connect(running, timeout=0.25) as sock:
            sock.sendall(head("/api/events", new_ip(), "Content-Type: application/json", "Content-Length: 10000"))
            answer, _ = trickle_until_closed(sock, b"a" * 10, began + 15)
        elapsed = time.monotonic() - began
    finally:
        running.stop()

    # THEN it is cut off once the 5 s grace period is over, long before the read timeout
    assert 5 <= elapsed < 9, elapsed
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 ")
