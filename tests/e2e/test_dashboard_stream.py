"""The dashboard's live stream over a real socket: stats each second, and an end at shutdown.

An open page keeps its stream open for as long as the host runs; uvicorn's graceful shutdown
waits for every response to finish. So the host ends the streams itself when it starts
stopping: Ctrl-C with a dashboard open stops the host well within its grace period.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import start_host

pytestmark = pytest.mark.e2e

GRACE_SECONDS = 10.0
"""The host's shutdown grace (`HostOptions.shutdown_grace_seconds`, uvicorn's `timeout_graceful_shutdown`)."""


def sse_messages(lines: list[str]) -> list[tuple[str, str]]:
    """(event, data) of each complete server-sent event in `lines`."""
    found, event, data = [], "message", ""
    for line in lines:
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
        elif line == "" and data:
            found.append((event, data))
            event, data = "message", ""
    return found


@pytest.mark.parametrize("instances", ["1", "2"])
def test_ctrl_c_with_a_dashboard_open_stops_well_within_the_grace_period(tmp_path: Path, instances: str) -> None:
    host = start_host(tmp_path, "--instances", instances)
    try:
        with (
            httpx.Client(base_url=host.url, timeout=GRACE_SECONDS * 3) as client,
            client.stream("GET", "/dashboard/stream") as stream,
        ):
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            seen: list[str] = []
            while not any(event == "stats" for event, _ in sse_messages(seen)):
                seen.append(next(lines))
            [(_, stats)] = [message for message in sse_messages(seen) if message[0] == "stats"]
            assert {"ingested", "stored", "analytics", "ingestP99Ms", "queueDepth"} <= set(json.loads(stats))

            interrupted = time.monotonic()
            host.process.send_signal(signal.SIGINT)  # Ctrl-C
            code = host.process.wait(timeout=GRACE_SECONDS * 3)
            took = time.monotonic() - interrupted
            rest = list(lines)  # the stream ended: the host finished its answer
        assert code == 0
        assert took < GRACE_SECONDS / 2, f"the host took {took:.1f} s to stop with a dashboard open"
        assert rest is not None
    finally:
        host.stop()
