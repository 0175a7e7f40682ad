"""Kept events through the running local host: posted good and bad, seen by `cloudscale tail` and `live show`.

GIVEN `cloudscale run` and `cloudscale tail` in processes of their own WHEN a good and a bad
event are posted THEN tail prints both (the bad one with its reason) as they come, `live show`
lists them, `live reset` forgets them, and Ctrl-C ends tail cleanly.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import INGEST_ONLY, REPO, LocalHost, start_host

pytestmark = pytest.mark.e2e

GOOD = {"eventType": "page_view", "correlationId": "test-1", "tenantId": "acme", "url": "/home"}
BAD = {"eventType": "page_view", "tenantId": "acme", "colour": "red"}


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    running = start_host(tmp_path_factory.mktemp("data"), **INGEST_ONLY)
    yield running
    running.stop()


def cli_env(host: LocalHost) -> dict[str, str]:
    return {**os.environ, "CLOUDSCALE_DATA_DIR": str(host.data_dir), "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def cli(host: LocalHost, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cloudscale_local.cli.main", *args],
        cwd=REPO,
        env=cli_env(host),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass
class Follower:
    """`cloudscale tail` running, its stdout lines collected as they come."""

    process: subprocess.Popen[str]
    lines: queue.Queue[str]

    def next_line(self, within: float = 10.0) -> str:
        try:
            return self.lines.get(timeout=within)
        except queue.Empty:
            pytest.fail(f"tail printed no line within {within} s")

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=10)


@pytest.fixture
def follow(host: LocalHost) -> Iterator[Any]:
    started: list[Follower] = []

    def start(*args: str) -> Follower:
        process = subprocess.Popen(
            [sys.executable, "-m", "cloudscale_local.cli.main", "tail", *args],
            cwd=REPO,
            env=cli_env(host),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line.rstrip("\n"))

        threading.Thread(target=pump, daemon=True).start()
        follower = Follower(process, lines)
        started.append(follower)
        return follower

    yield start
    for follower in started:
        if follower.process.poll() is None:
            follower.process.kill()
            follower.process.wait()
        if follower.process.stdout is not None:
            follower.process.stdout.close()


def post(host: LocalHost, body: object, path: str = "/api/events") -> int:
    with host.client() as client:
        return client.post(path, content=orjson.dumps(body), headers={"Content-Type": "application/json"}).status_code


def test_tail_follows_a_good_and_a_bad_event_and_stops_on_ctrl_c(host: LocalHost, follow: Any) -> None:
    assert cli(host, "live", "reset").returncode == 0
    tail = follow("--json", "--tenant", "acme")
    # Following starts once tail has read the (possibly empty) backlog: post until the first shows.
    assert post(host, GOOD) == 202
    first = orjson.loads(tail.next_line())
    assert (first["outcome"], first["status"], first["api"], first["event"]["url"]) == (
        "accepted",
        202,
        "events",
        "/home",
    )
    assert post(host, [GOOD, BAD]) == 202
    assert post(host, {"tenantId": "acme"}) == 400
    seen = [orjson.loads(tail.next_line()) for _ in range(3)]
    assert [(event["outcome"], event["status"]) for event in seen] == [
        ("accepted", 202),
        ("rejected", 202),
        ("rejected", 400),
    ]
    assert seen[1]["reasons"][0]["field"] == "colour"
    assert seen[2]["reasons"][0] == {"code": "missing", "message": "Field required", "field": "eventType"}
    assert [event["seq"] for event in [first, *seen]] == sorted(event["seq"] for event in [first, *seen])
    assert tail.interrupt() == 0


def test_tail_prints_one_plain_line_an_event_with_a_rejected_ones_reasons(host: LocalHost, follow: Any) -> None:
    tail = follow("--rejected", "--type", "signup")
    assert post(host, {"eventType": "signup", "tenantId": "globex", "bogus": 1}) == 400
    line = tail.next_line()
    assert "\x1b[" not in line, "not a terminal: no colour"
    for part in ("rejected", "events", "400", "globex", "signup", "bogus: extra_forbidden unknown field 'bogus'"):
        assert part in line
    assert tail.interrupt() == 0


def test_the_segment_api_is_kept_under_its_name(host: LocalHost) -> None:
    message = {"userId": "u1", "event": "Signed Up", "tenantId": "initech", "writeKey": "cs_bk_" + "s" * 48}
    post(host, message, "/api/v1/track")  # refused: an unknown key; kept with the refusal
    deadline = time.monotonic() + 10
    while not (shown := cli(host, "live", "show", "--json", "--tenant", "initech").stdout.splitlines()):
        assert time.monotonic() < deadline, "the Segment call was never kept"
    [kept] = [orjson.loads(line) for line in shown]
    assert (kept["api"], kept["outcome"], kept["eventType"], kept["status"]) == ("segment", "rejected", "track", 401)
    assert "writeKey" not in kept["event"]


def test_live_show_lists_the_kept_events_and_live_reset_forgets_them(host: LocalHost) -> None:
    assert post(host, {"eventType": "shown", "tenantId": "hooli"}) == 202
    deadline = time.monotonic() + 10
    while not cli(host, "live", "show", "--tenant", "hooli").stdout:
        assert time.monotonic() < deadline, "the event was never kept"
    shown = cli(host, "live", "show", "--accepted", "--limit", "1")
    assert shown.returncode == 0
    assert "shown" in shown.stdout
    assert "hooli" in shown.stdout
    reset = cli(host, "live", "reset")
    assert reset.returncode == 0
    assert reset.stdout.startswith("forgot ")
    assert int(reset.stdout.split()[1]) >= 1
    assert cli(host, "live", "show", "--json").stdout == ""


def test_without_a_data_folder_the_commands_say_to_start_the_host(tmp_path: Path) -> None:
    env = {**os.environ, "CLOUDSCALE_DATA_DIR": str(tmp_path / "missing"), "PYTHONPATH": str(REPO)}
    for args in (["tail"], ["live", "show"]):
        run = subprocess.run(
            [sys.executable, "-m", "cloudscale_local.cli.main", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 1
        assert "cloudscale run" in run.stderr


def test_rejected_events_are_counted_by_reason_and_a_deep_one_is_kept_without_its_body(host: LocalHost) -> None:
    deep = b'{"eventType": "deep", "tenantId": "umbrella", "properties": ' + b'{"a": ' * 1000 + b"1" + b"}" * 1001
    with host.client() as client:
        answered = client.post(
            "/api/events",
            content=b"[" + orjson.dumps({**GOOD, "tenantId": "umbrella"}) + b"," + deep + b"]",
            headers={"Content-Type": "application/json"},
        )
        assert answered.status_code == 202
        assert (
            client.post("/api/events", content=b"{not json", headers={"Content-Type": "application/json"}).is_success
            is False
        )
        samples = {
            sample.labels["reason"]: sample.value
            for family in text_string_to_metric_families(client.get("/metrics").text)
            for sample in family.samples
            if sample.name == "cloudscale_events_rejected_total"
        }
    assert samples["too_deep"] >= 1
    assert samples["malformed_json"] >= 1

    deadline = time.monotonic() + 10
    while len(shown := cli(host, "live", "show", "--json", "--type", "deep").stdout.splitlines()) < 1:
        assert time.monotonic() < deadline, "the deep event was never kept"
    [kept] = [orjson.loads(line) for line in shown]
    assert (kept["outcome"], kept["tenantId"], kept["event"]) == ("rejected", "umbrella", None)
    assert kept["reasons"][0]["code"] == "too_deep"
