"""`cloudscale loadtest` against a real local host: every request accepted and followed to analytics.

Counts and shapes only: how fast anything is depends on the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import orjson
import pytest

from cloudscale_local.loadtest import LoadConfig, run_load
from tests.e2e.conftest import REPO, LocalHost

pytestmark = pytest.mark.e2e

# The generator speaks for many clients through X-Forwarded-For; the host must believe it.
TRUSTED_LOOPBACK = {"CLOUDSCALE_TRUSTED_PROXIES": "127.0.0.1/32"}
LATENCY_KEYS = {"count", "p50", "p90", "p99", "max"}


def test_a_short_run_is_accepted_stored_and_in_analytics(host_factory: Callable[..., LocalHost]) -> None:
    host = host_factory(**TRUSTED_LOOPBACK)
    report = run_load(LoadConfig(url=host.url, duration=3, target_rps=100, data_dir=host.data_dir, drain_seconds=30))

    assert report.requests_scheduled == report.requests_sent == 300
    assert report.status_counts == {"202": 300}
    assert report.events_sent == report.events_accepted == 300
    assert report.ingest_latency_ms.count == 300
    end_to_end = report.end_to_end
    assert end_to_end.measured, end_to_end.reason
    assert (end_to_end.tracked, end_to_end.arrived, end_to_end.missing) == (300, 300, 0)
    assert end_to_end.to_stored_ms.count == end_to_end.to_analytics_ms.count == 300
    assert end_to_end.to_analytics_ms.max is not None


def test_the_command_runs_end_to_end_and_writes_its_json(
    host_factory: Callable[..., LocalHost], tmp_path_factory: pytest.TempPathFactory
) -> None:
    host = host_factory(**TRUSTED_LOOPBACK)
    out = tmp_path_factory.mktemp("loadtest") / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cloudscale_local.cli.main",
            "loadtest",
            "--url",
            host.url,
            "--duration",
            "2",
            "--target-rps",
            "50",
            "--batch-size",
            "2",
            "--workers",
            "2",
            "--data-dir",
            str(host.data_dir),
            "--json-out",
            str(out),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "202 -> analytics" in result.stdout
    assert "sent 100" in result.stderr  # the progress line's last word on the count

    report = orjson.loads(out.read_bytes())
    assert report["workers"] == 2
    assert report["requestsScheduled"] == report["requestsSent"] == 100
    assert report["statusCounts"] == {"202": 100}
    assert report["eventsSent"] == report["eventsAccepted"] == 200
    assert set(report["ingestLatencyMs"]) == LATENCY_KEYS
    assert report["ingestLatencyMs"]["count"] == 100
    assert set(report["behindSchedule"]) == {"lateSends", "worstLagMs", "thresholdMs", "inFlightCapHits", "skipped"}
    assert isinstance(report["keptUp"], bool)
    assert report["generatorCpuSeconds"] > 0
    end_to_end = report["endToEnd"]
    assert end_to_end["measured"] is True
    assert (end_to_end["tracked"], end_to_end["arrived"], end_to_end["missing"]) == (200, 200, 0)
    assert set(end_to_end["toStoredMs"]) == set(end_to_end["toAnalyticsMs"]) == LATENCY_KEYS
    assert end_to_end["toAnalyticsMs"]["count"] == 200
