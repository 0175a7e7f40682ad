"""A Cosmos DB trigger's lease intervals, as the decorator writes them into its binding."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from cloudscale_local.host.feed_timings import FeedTimings
from cloudscale_local.host.functions import index_functions


def indexed_timings(**intervals: Any) -> FeedTimings:
    app = func.FunctionApp()

    @app.cosmos_db_trigger(
        arg_name="documents", connection="CosmosDBConnection", database_name="db", container_name="c", **intervals
    )
    async def feed(documents: func.DocumentList) -> None: ...

    [function] = index_functions(app).change_feed
    return function.timings


def test_the_binding_s_milliseconds_become_the_trigger_s_seconds() -> None:
    timings = indexed_timings(
        lease_acquire_interval=200, lease_expiration_interval=3000, lease_renew_interval=500, feed_poll_delay=100
    )

    assert timings == FeedTimings(
        acquire_interval=0.2, expiration_interval=3.0, renew_interval=0.5, feed_poll_delay=0.1
    )


def test_unset_or_zero_intervals_are_the_change_feed_processor_s_defaults() -> None:
    # The listener passes a setting to the processor only when it is above 0.
    timings = indexed_timings(lease_renew_interval=0, feed_poll_delay=1000)

    assert timings == FeedTimings(
        acquire_interval=13.0, expiration_interval=60.0, renew_interval=17.0, feed_poll_delay=1.0
    )
