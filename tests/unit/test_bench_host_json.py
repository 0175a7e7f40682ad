"""The bench's copy of host.json: capacity runs without the request queue, the overload run with its limits."""

from __future__ import annotations

import orjson

from cloudscale_local.bench.harness import bench_host_json


def test_capacity_runs_lift_the_request_queue_of_the_apps_host_json() -> None:
    http = orjson.loads(bench_host_json(None))["extensions"]["http"]
    assert http["maxConcurrentRequests"] == -1
    assert http["maxOutstandingRequests"] == -1
    assert http["routePrefix"] == "api"


def test_the_overload_run_sets_the_limits_it_is_given() -> None:
    http = orjson.loads(bench_host_json({"maxConcurrentRequests": 8, "maxOutstandingRequests": 24}))["extensions"][
        "http"
    ]
    assert (http["maxConcurrentRequests"], http["maxOutstandingRequests"]) == (8, 24)
