"""The change-feed stage's use case: a batch of stored documents in, analytics rows out.

Called with each batch the Cosmos DB change feed (or, locally, the embedded store's feed)
delivers, in order. Returning means the batch is in analytics and the feed may move on;
raising `AnalyticsSinkError` means it is not, and the host retries the batch (see
`changefeed.blueprint` for the retry policy, docs/tradeoffs.md for what is left to
reconciliation).

A document that is not a stored event (another writer's document in the container, a
future document version) is skipped and counted, not retried: retrying cannot change it,
and it must not hold back the events behind it. So is a stored event whose row cannot be
built (a device time that overflows when turned into UTC: the ingest API refuses such times,
this is the defence for documents stored before it did, or by another writer).

A document of an erased subject (`shared.suppression`, checked at the time ingest received
the event) is not written to analytics, and it is deleted from the event store: it was
stored by a delivery that was already past its own check when the erasure deleted the
subject's other events, and nothing else would remove it. Deleting is idempotent, so a
retried batch deletes (nothing) again; the counts are kept once the batch has landed. A
suppression list that cannot be read fails the batch (`PrivacyStoreError`), which is retried
like an analytics outage: nothing is sent unchecked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from shared.domain.analytics import AnalyticsRow, to_analytics_row
from shared.domain.stored_event import StoredEvent
from shared.ports import AnalyticsSink
from shared.suppression import SuppressionCheck
from shared.telemetry import AnalyticsMetrics

__all__ = ["AnalyticsFeedService", "EventDeleter", "FeedOutcome", "analytics_row"]

logger = logging.getLogger(__name__)


class EventDeleter(Protocol):
    """The one thing the feed asks of the event store (`SubjectEventStore.delete_events`)."""

    async def delete_events(self, tenant_id: str, event_ids: Sequence[str]) -> int: ...


@dataclass(frozen=True, slots=True)
class FeedOutcome:
    written: int
    skipped: int
    suppressed: int = 0
    """Documents of erased subjects: left out of analytics and deleted from the event store."""


class AnalyticsFeedService:
    """Maps change-feed documents to analytics rows and writes them, one batch at a time."""

    def __init__(
        self,
        sink: AnalyticsSink,
        metrics: AnalyticsMetrics,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        suppressions: SuppressionCheck | None = None,
        events: EventDeleter | None = None,
    ) -> None:
        """`suppressions` and `events` go together: the list checked for each document, and the
        store its suppressed documents are deleted from. None only where no subject is ever
        erased (tests of other concerns); the deployed stage always has both."""
        if (suppressions is None) != (events is None):
            raise ValueError("suppressions and events are given together")
        self._sink = sink
        self._metrics = metrics
        self._clock = clock
        self._suppressions = suppressions
        self._events = events

    async def handle(self, documents: Sequence[Mapping[str, Any]]) -> FeedOutcome:
        rows: list[AnalyticsRow] = []
        skipped = 0
        suppressed: dict[str, list[str]] = {}
        for document in documents:
            row = analytics_row(document)
            if row is None:
                skipped += 1
            elif self._suppressions is not None and await self._suppressions.drops(
                row.tenant_id, row.user_id, row.anonymous_id, row.received_at
            ):
                suppressed.setdefault(row.tenant_id, []).append(row.event_id)
            else:
                rows.append(row)
        await self._sink.write(rows)
        if self._events is not None:
            for tenant_id, event_ids in suppressed.items():
                await self._events.delete_events(tenant_id, event_ids)
        # Counted once the batch landed, so a retried batch is not counted twice.
        if skipped:
            self._metrics.documents_skipped.add(skipped)
        dropped = sum(len(event_ids) for event_ids in suppressed.values())
        if dropped:
            self._metrics.events_suppressed.add(dropped, {"stage": "changefeed"})
        self._metrics.rows_written.add(len(rows))
        now = self._clock()
        for row in rows:
            self._metrics.analytics_lag.record(max(0.0, (now - row.stored_at).total_seconds()), {"since": "stored"})
            self._metrics.analytics_lag.record(max(0.0, (now - row.received_at).total_seconds()), {"since": "received"})
        return FeedOutcome(written=len(rows), skipped=skipped, suppressed=dropped)


def analytics_row(document: Mapping[str, Any]) -> AnalyticsRow | None:
    """The row for one change-feed document, or None (logged) if it is not a stored event or cannot be a row.

    `_ts` is the store's commit time in seconds since the epoch: Cosmos DB's system property
    (whole seconds), which the local host's feed sets too (with its fraction).
    """
    try:
        event = StoredEvent.from_document(dict(document))
        stored_at = datetime.fromtimestamp(float(document["_ts"]), UTC)
    except (ValidationError, KeyError, TypeError, ValueError, OverflowError, OSError) as exc:
        # OSError: a `_ts` beyond what the C library's time functions take.
        logger.warning(
            "change-feed document %r is not a stored event; left out of analytics: %s",
            document.get("id"),
            type(exc).__name__,
        )
        return None
    try:
        row = to_analytics_row(event, stored_at)
        # Serialised here once, as the sink will: a row that cannot be (a time that overflows in
        # UTC) would otherwise fail its whole batch on every retry, holding analytics back for good.
        row.to_json_dict()
    except (ValueError, OverflowError) as exc:
        logger.warning(
            "change-feed document %r cannot become an analytics row; left out of analytics: %s",
            document.get("id"),
            type(exc).__name__,
        )
        return None
    return row
