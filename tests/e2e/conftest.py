"""Runs `cloudscale run` as a real process on a free loopback port, as a user would."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 30

INGEST_ONLY = {"AzureWebJobs.process_event.Disabled": "true"}
"""Settings that turn the process stage off (as on Azure), so tests can inspect what ingest queued."""


@dataclass
class LocalHost:
    """A running local host: its URL, data folder and output."""

    process: subprocess.Popen[str]
    url: str
    data_dir: Path
    output: list[str] = field(default_factory=list)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def instance_pids(self) -> list[int]:
        """The host's instance processes: the supervisor's children but its resource tracker
        (`--instances` above 1), else the host process itself."""
        pid = self.process.pid
        found = []
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
        return sorted(found) or [pid]

    def crash(self) -> None:
        """Kill every process of the host outright (its instances, then the supervisor), as a power cut would."""
        for pid in self.instance_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.send_signal(signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code


def start_host(data_dir: Path, *args: str, **settings: str) -> LocalHost:
    """Start `cloudscale run` with `args` after `run --port 0`, and `settings` in its environment."""
    return _start(data_dir, args, settings, None)


def start_host_with_fd_limit(data_dir: Path, fd_limit: int, **settings: str) -> LocalHost:
    """`start_host`, with the host allowed at most `fd_limit` open files (its `ulimit -n`)."""
    return _start(data_dir, (), settings, fd_limit)


def _start(data_dir: Path, args: tuple[str, ...], settings: dict[str, str], fd_limit: int | None) -> LocalHost:
    env = {
        **os.environ,
        "CLOUDSCALE_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        **settings,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cloudscale_local.cli.main", "run", "--port", "0", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=None if fd_limit is None else _limit_open_files(fd_limit),
    )
    assert process.stdout is not None
    output: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(STARTUP_SECONDS) or not found:
        process.kill()
        process.wait()
        pytest.fail("the local host did not start:\n" + "".join(output))
    return LocalHost(process=process, url=found[0], data_dir=data_dir, output=output)


def _limit_open_files(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


@pytest.fixture
def host_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LocalHost]]:
    """Start hosts with given settings; every one is stopped at the end of the test."""
    started: list[LocalHost] = []

    def start(data_dir: Path | None = None, **settings: str) -> LocalHost:
        host = start_host(data_dir or tmp_path_factory.mktemp("data"), **settings)
        started.append(host)
        return host

    yield start
    for host in started:
        host.stop()


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    """One ingest-only host for a module's tests. Loopback is a trusted proxy, so each test can
    speak for its own client IP through X-Forwarded-For and not share a token bucket."""
    running = start_host(
        tmp_path_factory.mktemp("data"), CLOUDSCALE_TRUSTED_PROXIES="127.0.0.1/32,::1/128", **INGEST_ONLY
    )
    yield running
    running.stop()
