"""Reconciliation: compare the event store and analytics hour by hour, re-send what is missing.

The change feed is at-least-once only while its retries last (see `changefeed.blueprint`);
this closes the gap. For each hour of commit time in the window, count the events in the
store and in analytics; where analytics has fewer, list the ids on both sides and write the
missing events' rows again. An event is (tenantId, eventId) on both sides, so two tenants'
events with the same id are two events here too. The analytics store keeps one row per
(`TenantId`, `EventId`), so a row that was only late (in flight) and is re-sent is harmless.

Counting first keeps the common case cheap: one count per side per window, ids only for
the hours that differ.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shared.domain.analytics import to_analytics_row
from shared.ports import AnalyticsHistory, AnalyticsSink, StoredEventHistory

__all__ = ["HOUR", "HourDifference", "ReconcileReport", "Reconciler", "hour_window"]

logger = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
RESEND_BATCH = 100


@dataclass(frozen=True, slots=True)
class HourDifference:
    hour: datetime
    stored: int
    in_analytics: int
    resent: int


@dataclass(slots=True)
class ReconcileReport:
    start: datetime
    end: datetime
    hours_checked: int = 0
    """Hours of the window in which either side holds events."""
    differences: list[HourDifference] = field(default_factory=list)

    @property
    def resent(self) -> int:
        return sum(difference.resent for difference in self.differences)


def hour_window(end: datetime, hours: int) -> tuple[datetime, datetime]:
    """[start, end) covering the `hours` whole hours up to `end` (end itself kept as given)."""
    start = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - (hours - 1) * HOUR
    return start, end


class Reconciler:
    """Finds events stored but missing from analytics, and writes them again."""

    def __init__(self, store: StoredEventHistory, analytics: AnalyticsHistory, sink: AnalyticsSink) -> None:
        self._store = store
        self._analytics = analytics
        self._sink = sink

    async def reconcile(self, start: datetime, end: datetime) -> ReconcileReport:
        report = ReconcileReport(start=start, end=end)
        stored_counts = await self._store.hourly_counts(start, end)
        analytics_counts = await self._analytics.hourly_counts(start, end)
        report.hours_checked = len(set(stored_counts) | set(analytics_counts))
        for hour in sorted(stored_counts):
            stored, present = stored_counts[hour], analytics_counts.get(hour, 0)
            if present >= stored:
                continue
            # The hour may be cut by the window's ends: compare ids only inside the window.
            hour_start, hour_end = max(hour, start), min(hour + HOUR, end)
            resent = await self._resend_missing(hour_start, hour_end)
            report.differences.append(HourDifference(hour=hour, stored=stored, in_analytics=present, resent=resent))
            logger.warning(
                "analytics had %d of %d events stored in the hour from %s; re-sent %d",
                present,
                stored,
                hour.isoformat(),
                resent,
            )
        return report

    async def _resend_missing(self, start: datetime, end: datetime) -> int:
        present = await self._analytics.event_keys(start, end)
        missing = [
            to_analytics_row(event, stored_at)
            for event, stored_at in await self._store.stored_between(start, end)
            if (event.tenant_id, event.event_id) not in present
        ]
        for offset in range(0, len(missing), RESEND_BATCH):
            await self._sink.write(missing[offset : offset + RESEND_BATCH])
        return len(missing)
