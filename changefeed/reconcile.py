"""Reconciliation: compare the event store and analytics hour by hour, re-send what is missing.

The change feed is at-least-once only while its retries last (see `changefeed.blueprint`);
this closes the gap. For each hour of commit time in the window, count the events in the
store and in analytics; where analytics has fewer, list the ids on both sides and write the
missing events' rows again. An event is (tenantId, eventId) on both sides, so two tenants'
events with the same id are two events here too. The analytics store keeps one row per
(`TenantId`, `EventId`), so a row that was only late (in flight) and is re-sent is harmless.

Counting first keeps the common case cheap: one count per side per window, ids only for
the hours that differ.

An erased subject's event (`shared.suppression`) is never re-sent. Missing from analytics on
purpose, it would make its hour differ on every run; so, as the change feed does, it is
deleted from the event store when found, and the next run finds the hour's counts equal.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from shared.domain.analytics import AnalyticsRow, to_analytics_row
from shared.ports import AnalyticsHistory, AnalyticsSink, StoredEventHistory
from shared.suppression import SuppressionCheck, event_suppressed
from shared.telemetry import AnalyticsMetrics

__all__ = ["HOUR", "HourDifference", "ReconcileReport", "ReconciledStore", "Reconciler", "hour_window"]

logger = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
RESEND_BATCH = 100


@dataclass(frozen=True, slots=True)
class HourDifference:
    hour: datetime
    stored: int
    in_analytics: int
    resent: int
    suppressed: int = 0
    """Missing events of erased subjects: not re-sent, deleted from the event store."""


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

    @property
    def suppressed(self) -> int:
        return sum(difference.suppressed for difference in self.differences)


class ReconciledStore(StoredEventHistory, Protocol):
    """The event store as reconciliation uses it: read by commit time, and an erased subject's
    events deleted (`SubjectEventStore.delete_events`)."""

    async def delete_events(self, tenant_id: str, event_ids: Sequence[str]) -> int: ...


def hour_window(end: datetime, hours: int) -> tuple[datetime, datetime]:
    """[start, end) covering the `hours` whole hours up to `end` (end itself kept as given)."""
    start = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - (hours - 1) * HOUR
    return start, end


class Reconciler:
    """Finds events stored but missing from analytics, and writes them again."""

    def __init__(
        self,
        store: ReconciledStore,
        analytics: AnalyticsHistory,
        sink: AnalyticsSink,
        *,
        suppressions: SuppressionCheck | None = None,
        metrics: AnalyticsMetrics | None = None,
    ) -> None:
        """`suppressions`: None only where no subject is ever erased (tests of other concerns);
        the deployed reconciler always has it. `metrics` counts the suppressed events."""
        self._store = store
        self._analytics = analytics
        self._sink = sink
        self._suppressions = suppressions
        self._metrics = metrics

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
            resent, suppressed = await self._resend_missing(hour_start, hour_end)
            report.differences.append(
                HourDifference(hour=hour, stored=stored, in_analytics=present, resent=resent, suppressed=suppressed)
            )
            logger.warning(
                "analytics had %d of %d events stored in the hour from %s; re-sent %d, dropped %d of erased subjects",
                present,
                stored,
                hour.isoformat(),
                resent,
                suppressed,
            )
        return report

    async def _resend_missing(self, start: datetime, end: datetime) -> tuple[int, int]:
        """Re-send the hour's missing events; return (re-sent, suppressed)."""
        present = await self._analytics.event_keys(start, end)
        missing: list[AnalyticsRow] = []
        suppressed: dict[str, list[str]] = {}
        for event, stored_at in await self._store.stored_between(start, end):
            if (event.tenant_id, event.event_id) in present:
                continue
            if self._suppressions is not None and await event_suppressed(self._suppressions, event):
                suppressed.setdefault(event.tenant_id, []).append(event.event_id)
                continue
            missing.append(to_analytics_row(event, stored_at))
        for offset in range(0, len(missing), RESEND_BATCH):
            await self._sink.write(missing[offset : offset + RESEND_BATCH])
        for tenant_id, event_ids in suppressed.items():
            await self._store.delete_events(tenant_id, event_ids)
        dropped = sum(len(event_ids) for event_ids in suppressed.values())
        if dropped and self._metrics is not None:
            self._metrics.events_suppressed.add(dropped, {"stage": "reconcile"})
        return len(missing), dropped
