"""`make bench` end to end on a tiny scale: the harness starts its servers, runs wrk, drains, reports.

A second of load per scenario: this checks that the pieces fit (the wrk script, the ceiling
processes, the host in its bench script root, the drain, the report), never how fast they are.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from cloudscale_local.bench.__main__ import main

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (sudo apt-get install wrk)"),
]


def test_a_tiny_bench_run_measures_and_reports(tmp_path: Path) -> None:
    # GIVEN one second of load for the ceiling and the full pipeline
    out, raw = tmp_path / "benchmarks.md", tmp_path / "bench.json"

    # WHEN the bench runs them
    code = main(
        [
            "--only", "bare", "full",
            "--duration", "1",
            "--warmup", "1",
            "--connections", "4",
            "--instances", "1",
            "--out", str(out),
            "--json-out", str(raw),
        ]
    )  # fmt: skip

    # THEN both were served with 202s only, every accepted event reached analytics, and the report says so
    assert code == 0
    results = {result["scenario"]: result for result in orjson.loads(raw.read_bytes())}
    for key in ("bare", "full"):
        statuses = results[key]["wrk"]["statuses"]
        assert set(statuses) == {"202"}
        assert statuses["202"] > 0
    drain = results["full"]["drain"]
    assert drain["arrived"] >= drain["expected"] > 0
    assert drain["stored"] >= drain["expected"]
    assert results["full"]["cpuMsPerEvent"] > 0
    text = out.read_text()
    assert "| (a) bare ASGI app (202, nothing done) | 1 |" in text
    assert "## Azure projection" in text
