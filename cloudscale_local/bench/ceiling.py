"""The benchmark's ceiling: a do-nothing ASGI app on the host's own uvicorn stack.

It reads the request body and answers 202 `{}`: no Functions translation, no gateway, no
app. It runs on uvicorn with the local host's own configuration (`http_limits.server_config`:
httptools bounded by `bounded_protocol`, no access log, no proxy-header rewriting, no server
header), in as many worker processes as
the host runs instances, each on its own listening socket on one port (`SO_REUSEPORT`), which
the benchmark binds and hands down, as the host's supervisor does for its instances. What the host answers per second,
divided by what this answers, is the share of the server left to the pipeline.

Run one worker with `python -m cloudscale_local.bench.ceiling --fd N` (N: an inherited,
listening socket); `serve_ceiling` starts the workers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from cloudscale_local.host.http_limits import HttpLimits, server_config

__all__ = ["app", "serve_ceiling"]

_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"2")]


async def app(scope: dict[str, object], receive: object, send: object) -> None:
    """ASGI: drain the body, answer 202 `{}`."""
    if scope["type"] != "http":  # lifespan is off; nothing else arrives
        return
    more = True
    while more:
        message = await receive()  # type: ignore[operator]
        more = bool(message.get("more_body", False))
    await send({"type": "http.response.start", "status": 202, "headers": _HEADERS})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"{}"})  # type: ignore[operator]


def _serve_fd(fd: int) -> None:
    config = server_config(app, HttpLimits())
    sock = socket.socket(fileno=fd)
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


@contextmanager
def serve_ceiling(workers: int, environ: dict[str, str] | None = None) -> Iterator[tuple[str, list[int]]]:
    """Start `workers` ceiling processes on one loopback port; yield its URL and their pids."""
    listeners: list[socket.socket] = []
    port = 0
    for _ in range(max(1, workers)):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listeners.append(listener)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(2048)
        port = listener.getsockname()[1]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "cloudscale_local.bench.ceiling", "--fd", str(listener.fileno())],
            pass_fds=(listener.fileno(),),
            env=environ if environ is not None else dict(os.environ),
        )
        for listener in listeners
    ]
    try:
        yield f"http://127.0.0.1:{port}", [process.pid for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for listener in listeners:
            listener.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudscale_local.bench.ceiling", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="An inherited listening socket.")
    _serve_fd(parser.parse_args(argv).fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
