"""A line per invocation, as `func start` prints, through the real host: shown, rate-limited, silenced."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.e2e.conftest import LocalHost, start_host
from tests.e2e.test_ingest_api import SEED_EXAMPLE, new_ip, post
from tests.e2e.test_process_pipeline import wait_for_stored

pytestmark = pytest.mark.e2e

EXECUTED = re.compile(r"Executed 'Functions\.(\w+)' \((Succeeded|Failed), Id=([0-9a-f-]{36}), Duration=\d+ms\)(.*)$")
SUMMARY = re.compile(r"… ([\d,]+) more invocations? in the last 1 s: (.*)$")


def executed(host: LocalHost, function: str) -> list[re.Match[str]]:
    """The invocation lines of `function` printed so far."""
    found = (EXECUTED.search(line) for line in list(host.output))
    return [match for match in found if match is not None and match.group(1) == function]


def wait_for(condition: Callable[[], object], host: LocalHost, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("not printed in time; the host printed:\n" + "".join(host.output[-60:]))
        time.sleep(0.05)


@pytest.fixture
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LocalHost]]:
    hosts: list[LocalHost] = []

    def start(*args: str) -> LocalHost:
        host = start_host(tmp_path_factory.mktemp("data"), *args)
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        host.stop()


def test_a_post_prints_its_line_and_so_do_the_queue_and_feed_invocations_it_causes(
    started: Callable[..., LocalHost],
) -> None:
    # GIVEN a host as `cloudscale run` starts by default
    host = started()
    with host.client() as client:
        # WHEN the seed's event is posted, then a batch of two (one bad), then a Segment call
        response = post(client, SEED_EXAMPLE, new_ip())
        post(client, [SEED_EXAMPLE, {"eventType": "page_view"}], new_ip())
        client.post("/api/v1/track", json={"userId": "u", "event": "signed_up", "tenantId": "globex"})
        wait_for_stored(client, "acme", response.json()["results"][0]["eventId"], timeout=10.0)

    # THEN each POST has its line: function, outcome, id, duration, request, status, tenant and counts
    wait_for(lambda: len(executed(host, "ingest_events")) >= 2 and executed(host, "segment_api"), host)
    first, second = executed(host, "ingest_events")[:2]
    assert first.group(2) == "Succeeded"
    assert first.group(4) == " POST /api/events 202 tenant=acme accepted=1 rejected=0"
    assert second.group(4) == " POST /api/events 202 tenant=acme accepted=1 rejected=1"
    assert executed(host, "segment_api")[0].group(4) == " POST /api/v1/track 200 tenant=globex accepted=1 rejected=0"
    # AND the Service Bus invocation that stored it has its line, with its messages and their outcomes
    wait_for(lambda: executed(host, "process_event"), host)
    assert re.fullmatch(r" messages=(\d+) stored=\1", executed(host, "process_event")[0].group(4))
    # AND so does the change feed's batch into analytics, with its documents
    wait_for(lambda: executed(host, "events_to_analytics"), host)
    assert re.fullmatch(r" documents=\d+", executed(host, "events_to_analytics")[0].group(4))


def test_quiet_prints_no_invocation_line(started: Callable[..., LocalHost]) -> None:
    host = started("--quiet")
    with host.client() as client:
        response = post(client, SEED_EXAMPLE, new_ip())
        wait_for_stored(client, "acme", response.json()["results"][0]["eventId"], timeout=10.0)
        assert client.get("/api/health/live").status_code == 200
    host.stop()
    assert not any("Executed 'Functions." in line for line in host.output), "".join(host.output)


def test_a_burst_prints_a_summary_a_second_instead_of_a_line_each(started: Callable[..., LocalHost]) -> None:
    # GIVEN a host with two instances (each limits its own lines)
    host = started("--instances", "2")
    burst = 400
    # WHEN 400 requests come as fast as one client sends them
    with httpx.Client(base_url=host.url, timeout=30) as client:
        for _ in range(burst):
            assert client.get("/api/health/live").status_code == 200

    # THEN every invocation is either printed or counted in a summary, and far fewer lines are printed
    def counted() -> int:
        summarized = 0
        for line in list(host.output):
            match = SUMMARY.search(line)
            if match:
                kinds = dict(re.findall(r"(\w+ \w+) \N{MULTIPLICATION SIGN}([\d,]+)", match.group(2)))
                summarized += int(kinds.get("health_live 200", "0").replace(",", ""))
        return summarized + len(executed(host, "health_live"))

    wait_for(lambda: counted() == burst, host)
    assert len(executed(host, "health_live")) < burst / 2
    assert any(SUMMARY.search(line) for line in host.output)


def test_a_log_level_of_warning_keeps_succeeded_lines_out(started: Callable[..., LocalHost]) -> None:
    host = started("--log-level", "warning", "--instances", "1")
    with host.client() as client:
        assert client.get("/api/health/live").status_code == 200
    host.stop()
    assert not any("Executed 'Functions." in line for line in host.output), "".join(host.output)
