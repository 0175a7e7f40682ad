"""The change-feed stage: every stored event into the analytics store.

`events_to_analytics` is triggered by the Cosmos DB change feed of the events container.
The lease container (`leases`) is created by the infrastructure: identity-based connections
cannot create containers.

`max_items_per_invocation=100`: Data Explorer's streaming ingestion takes requests up to
4 MB; 100 events at the 32 KiB event limit plus enrichment stay under it, so a batch is
always one streaming request (never the slower queued fallback), and a typical batch of
~1 KB events is one small request every poll.

`feed_poll_delay=500` (milliseconds): once a lease's changes are drained, the trigger reads
again after half a second rather than the default five, so an event reaches analytics well
within a second of its 202 even when another instance stored it (the owner of its lease
finds it at its next poll). The price is two change-feed reads per lease per second while
idle.

The Functions Cosmos DB trigger checkpoints its lease once the invocation ends, failed or
not, so a batch whose write failed would be skipped (and without a retry policy it is not
retried at all). The retry policy below re-runs a failed batch with the host's exponential
backoff (from 1 s, growing by about twice as much each time, to 5 min; 12 retries: about 19
minutes) before the trigger moves on. What it leaves: an analytics outage longer than that,
or an instance lost in the middle of the retries, can skip a batch; the hourly
reconciliation (`reconcile_analytics`, also `cloudscale reconcile`) compares counts per hour
between the event store and analytics and re-sends what is missing. The local host follows
the same rules.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import azure.functions as func

from changefeed.reconcile import hour_window
from shared.assembly import analytics_feed, analytics_reconciler
from shared.telemetry import invocation_span

__all__ = ["bp"]

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the library leaves __init__ unannotated

logger = logging.getLogger(__name__)

MAX_ITEMS_PER_INVOCATION = 100
FEED_POLL_DELAY_MS = 500
RECONCILE_HOURS = 3
"""Each hourly run looks back over three hours: a missed run is covered by the next two."""
RECONCILE_SETTLE = timedelta(minutes=10)
"""Events stored in the last minutes may still be on their way (retries, queued ingestion)."""


@bp.function_name("events_to_analytics")
@bp.retry(
    strategy="exponential_backoff", max_retry_count="12", minimum_interval="00:00:01", maximum_interval="00:05:00"
)
@bp.cosmos_db_trigger(
    arg_name="documents",
    connection="CosmosDBConnection",
    database_name="%CLOUDSCALE_COSMOS_DATABASE%",
    container_name="%CLOUDSCALE_COSMOS_CONTAINER%",
    lease_container_name="leases",
    create_lease_container_if_not_exists=False,
    feed_poll_delay=FEED_POLL_DELAY_MS,
    max_items_per_invocation=MAX_ITEMS_PER_INVOCATION,
)
async def events_to_analytics(documents: func.DocumentList, context: func.Context) -> None:
    """Write one change-feed batch to analytics; raise (and be retried) if it did not land.

    The batch's span is linked to each stored event's trace (its `traceContext`).
    """
    batch = [document.to_dict() for document in documents]
    with invocation_span(context, "events to analytics", linked=(document.get("traceContext") for document in batch)):
        await analytics_feed().handle(batch)


@bp.function_name("reconcile_analytics")
@bp.timer_trigger(schedule="0 15 * * * *", arg_name="timer", run_on_startup=False, use_monitor=True)
async def reconcile_analytics(timer: func.TimerRequest, context: func.Context) -> None:
    """Every hour at :15, re-send to analytics what the change feed skipped in the last hours."""
    start, end = hour_window(datetime.now(UTC) - RECONCILE_SETTLE, RECONCILE_HOURS)
    with invocation_span(context, "reconcile analytics"):
        report = await analytics_reconciler().reconcile(start, end)
    logger.info(
        "reconciled %s to %s: %d hour(s) checked, %d event(s) re-sent",
        start.isoformat(),
        end.isoformat(),
        report.hours_checked,
        report.resent,
    )
