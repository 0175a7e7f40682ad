"""The deploy jobs' helper scripts, run for real: `.ci/retry` (the publish) and `.ci/smoke`.

Right after `az deployment group create` on a fresh environment the app's role assignments may
not apply yet, so the publish and the health check can fail for minutes. These tests run the
scripts with bash against real commands and a real HTTP server on 127.0.0.1 that answers like a
deployment still settling, and check that each retries, and gives up, within its bound.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RETRY = ROOT / ".ci" / "retry"
SMOKE = ROOT / ".ci" / "smoke"


def _bash() -> str:
    bash = shutil.which("bash")
    assert bash, "bash runs the deploy jobs' scripts"
    return bash


def _needs(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing} not installed")
        pytest.skip(f"{missing} not installed: the smoke script needs them")


def _run(script: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str, float]:
    started = time.monotonic()
    result = subprocess.run(
        [_bash(), str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


# --- .ci/retry ----------------------------------------------------------------------------------


def _flaky(tmp_path: Path, failures: int, status: int = 7) -> tuple[list[str], Path]:
    """A command that fails `failures` times with `status`, then succeeds; it logs each call."""
    log = tmp_path / "calls"
    script = (
        f'echo "$(date +%s.%N)" >> "{log}"; '
        f'[ "$(wc -l < "{log}")" -gt {failures} ] && exit 0; '
        f"echo 'publish failed: 403 AuthorizationPermissionMismatch' >&2; exit {status}"
    )
    return [_bash(), "-c", script], log


def _calls(log: Path) -> list[float]:
    return [float(line) for line in log.read_text().split()] if log.exists() else []


def test_retry_succeeds_once_the_command_does(tmp_path: Path) -> None:
    command, log = _flaky(tmp_path, failures=2)
    code, output, _ = _run(RETRY, "5", "0", *command)
    assert code == 0, output
    assert len(_calls(log)) == 3, "no try after the first success"
    assert output.count("::warning::") == 2


def test_retry_gives_up_after_its_tries_with_the_commands_status(tmp_path: Path) -> None:
    command, log = _flaky(tmp_path, failures=100, status=7)
    code, output, _ = _run(RETRY, "3", "0", *command)
    assert code == 7
    assert len(_calls(log)) == 3
    assert "failed 3 times" in output


def test_retry_pauses_double_each_time(tmp_path: Path) -> None:
    command, log = _flaky(tmp_path, failures=100)
    code, _, elapsed = _run(RETRY, "3", "1", *command)
    assert code != 0
    first, second, third = _calls(log)
    assert 0.9 <= second - first < 1.9, "first pause: the given delay"
    assert 1.9 <= third - second < 2.9, "then twice as long"
    assert elapsed < 6, "bounded: 1 + 2 seconds of pauses, and no pause after the last try"


def test_retry_does_not_run_a_passing_command_twice(tmp_path: Path) -> None:
    command, log = _flaky(tmp_path, failures=0)
    code, _, _ = _run(RETRY, "5", "30", *command)
    assert code == 0
    assert len(_calls(log)) == 1


@pytest.mark.parametrize("args", [["0", "1", "true"], ["x", "1", "true"], ["3", "-1", "true"], ["3", "1"]])
def test_retry_refuses_a_malformed_call(args: list[str]) -> None:
    code, output, _ = _run(RETRY, *args)
    assert code == 2
    assert "usage" in output


# --- .ci/smoke ----------------------------------------------------------------------------------


@dataclass
class FakeDeployment:
    """What the fake app answers: a list of (status, body) per path, the last one repeated."""

    health: list[tuple[int, dict[str, Any]]]
    ingest: list[tuple[int, dict[str, Any]]] = field(default_factory=lambda: [(202, {"accepted": 1})])
    health_calls: int = 0
    posted: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def deployment() -> Iterator[tuple[FakeDeployment, str]]:
    """A real HTTP server on 127.0.0.1 standing in for a deployed app that is still settling."""
    app = FakeDeployment(health=[(200, {"status": "healthy"})])

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            app.health_calls += 1
            self._answer(*app.health[min(app.health_calls, len(app.health)) - 1])

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            app.posted.append(json.loads(self.rfile.read(length)))
            self._answer(*app.ingest[min(len(app.posted), len(app.ingest)) - 1])

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _smoke(base: str, **env: str) -> tuple[int, str, float]:
    _needs("curl", "jq")
    settings = {
        "HEALTH_URL": f"{base}/api/health",
        "INGEST_URL": f"{base}/api/events",
        "POLL_SECONDS": "0",
        "HEALTH_TIMEOUT": "30",
        "SMOKE_ID": "4242",
        **env,
    }
    return _run(SMOKE, env=settings)


def test_smoke_waits_for_healthy_then_sends_the_seed_event(deployment: tuple[FakeDeployment, str]) -> None:
    app, base = deployment
    app.health = [
        (503, {"status": "unhealthy"}),  # roles not applied yet: the queue refuses the app
        (503, {"status": "unhealthy"}),
        (200, {"status": "degraded"}),  # the event store's role still on its way
        (200, {"status": "healthy"}),
    ]
    code, output, _ = _smoke(base)
    assert code == 0, output
    assert app.health_calls == 4, "degraded is not ready: it waits for healthy"
    seed = {"eventType": "page_view", "correlationId": "smoke-4242", "tenantId": "smoke", "url": "/home"}
    assert app.posted == [seed]


def test_smoke_gives_up_on_health_within_its_bound(deployment: tuple[FakeDeployment, str]) -> None:
    app, base = deployment
    app.health = [(503, {"status": "unhealthy"})]
    code, output, elapsed = _smoke(base, HEALTH_TIMEOUT="2", POLL_SECONDS="1")
    assert code != 0
    assert f"{base}/api/health was not healthy within 2s" in output
    assert elapsed < 6, "the bound holds"
    assert app.health_calls >= 2, "it retried"
    assert app.posted == [], "nothing is sent to an unhealthy app"


def test_smoke_gives_up_on_a_server_that_never_answers() -> None:
    # A port nothing listens on: curl reports 000 each time.
    _needs("curl", "jq")
    code, output, elapsed = _smoke("http://127.0.0.1:9", HEALTH_TIMEOUT="2", POLL_SECONDS="1")
    assert code != 0
    assert "HTTP 000" in output
    assert elapsed < 6


def test_smoke_retries_an_ingest_503(deployment: tuple[FakeDeployment, str]) -> None:
    app, base = deployment
    app.ingest = [(503, {"error": "queue_unavailable"}), (202, {"accepted": 1})]
    code, output, _ = _smoke(base)
    assert code == 0, output
    assert len(app.posted) == 2


def test_smoke_fails_at_once_when_ingest_rejects_the_event(deployment: tuple[FakeDeployment, str]) -> None:
    app, base = deployment
    app.ingest = [(400, {"error": "validation_failed"})]
    code, output, _ = _smoke(base)
    assert code != 0
    assert len(app.posted) == 1, "a 400 is a bug, not a deployment settling: no retry"
    assert "did not answer 202" in output
