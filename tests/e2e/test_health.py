"""Liveness and readiness on the local host, against faults made real: a file that cannot grow."""

from __future__ import annotations

import resource
from collections.abc import Callable

import pytest

from tests.e2e.conftest import INGEST_ONLY, LocalHost
from tests.e2e.test_ingest_api import SEED_EXAMPLE, post

pytestmark = pytest.mark.e2e


def test_a_queue_that_cannot_write_makes_readiness_fail_and_liveness_stay_up(
    host_factory: Callable[..., LocalHost],
) -> None:
    host = host_factory(**INGEST_ONLY)
    with host.client() as client:
        assert client.get("/api/health/ready").status_code == 200
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        # GIVEN the host can no longer grow any file, as on a full disk: the kernel refuses
        # the write (EFBIG) while reads still work. RLIMIT_FSIZE, set on the running host's
        # instance processes only; CPython ignores SIGXFSZ, so the write fails instead of killing it.
        instances = host.instance_pids()
        for pid in instances:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, hard))
        try:
            ready = client.get("/api/health/ready")
            alias = client.get("/api/health")
            live = client.get("/api/health/live")
            details = client.get("/api/health/details")
            ingest = post(client, SEED_EXAMPLE, "198.51.100.200")
        finally:
            for pid in instances:
                resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))
        recovered = client.get("/api/health/ready")

    # THEN ingest refuses, and readiness says so instead of reading its way to "healthy"
    assert ingest.status_code == 503, ingest.text
    assert ready.status_code == 503, ready.text
    assert ready.json()["status"] == "unhealthy"
    assert ready.json()["checks"]["queue"] == {"status": "unhealthy", "reason": "unavailable"}
    assert alias.status_code == 503
    assert alias.json() == ready.json()
    # AND the process is alive: a liveness probe must not restart it for a dependency's fault
    assert live.status_code == 200
    assert live.json() == {"status": "healthy"}
    # AND anonymous callers see codes only: no paths, no exception text
    for anonymous in (ready, alias):
        assert str(host.data_dir) not in anonymous.text
        assert "sqlite" not in anonymous.text.lower()
        assert "error" not in anonymous.text
    # while the operators' view (a function key on Azure) names the failure
    assert details.status_code == 503
    assert "queue" in details.json()["checks"]["queue"]["error"]
    # AND it recovers once writes work again
    assert recovered.status_code == 200, recovered.text
