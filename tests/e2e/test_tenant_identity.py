"""An event is (tenantId, eventId): two tenants sending one eventId get two events, end to end."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import orjson
import pytest

from tests.e2e.conftest import LocalHost
from tests.e2e.test_analytics_pipeline import analytics_rows, wait_for_count
from tests.e2e.test_ingest_api import SEED_EXAMPLE, new_ip, post
from tests.e2e.test_process_pipeline import TRUSTED_LOOPBACK, accepted_ids, cloudscale, wait_for_stored

pytestmark = pytest.mark.e2e

TENANTS = ("acme", "globex")


def test_two_tenants_events_with_one_event_id_are_both_stored_and_in_analytics(
    host_factory: Callable[..., LocalHost],
) -> None:
    # GIVEN tenants acme and globex each POST an event with the same eventId
    host = host_factory(**TRUSTED_LOOPBACK)
    event_id = str(uuid.uuid4())
    with host.client() as client:
        for tenant in TENANTS:
            answer = post(
                client, {**SEED_EXAMPLE, "tenantId": tenant, "eventId": event_id, "url": f"/{tenant}"}, new_ip()
            )
            # THEN each gets a 202 for its event
            assert accepted_ids(answer) == [event_id]

        # AND each is stored, in its own tenant, with its own content
        stored = {tenant: wait_for_stored(client, tenant, event_id, timeout=10) for tenant in TENANTS}
    assert {tenant: (document["tenantId"], document["url"]) for tenant, document in stored.items()} == {
        tenant: (tenant, f"/{tenant}") for tenant in TENANTS
    }

    # AND analytics has one row for each
    assert wait_for_count(host, 2, within=10) == 2
    rows = analytics_rows(host, "SELECT TenantId, Url FROM events WHERE EventId = ? ORDER BY TenantId", event_id)
    assert rows == [(tenant, f"/{tenant}") for tenant in TENANTS]

    # AND reconciliation finds nothing missing
    result = cloudscale(host, "reconcile", "--settle-seconds", "0", "--json")
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    assert (report["resent"], report["differences"]) == (0, [])
