"""Schedule monitoring (`use_monitor`) for timer functions: a durable last-run record per timer.

The timer extension's `ScheduleMonitor` keeps, per timer, the schedule status: `Last` (the
last occurrence it ran for), `Next` (the occurrence it waits for) and `LastUpdated`. On
Azure it is a blob in the app's storage (`timers/<host id>/<timer>/status`); here it is one
JSON file per timer under the data folder (`timers/<name>.json`), replaced atomically.

At start-up the extension compares the stored `Next` with the schedule: if the schedule
changed, `Next` is worked out again (from now, if the recomputed one has passed, so a
schedule change alone never makes a run past due); if `Next` is in the past, an occurrence
was missed while no host ran and the timer runs at once, past due. `check_past_due` is that
comparison (the extension's `ScheduleMonitor.CheckPastDueAsync`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cloudscale_local.host.ncrontab import CronSchedule

__all__ = ["NEVER", "ScheduleMonitor", "ScheduleStatus"]

NEVER = datetime.min.replace(tzinfo=UTC)
"""What the extension records for a time that has not happened (`default(DateTime)`)."""
_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)
"""NCrontab's answer for a schedule that never fires (`DateTime.MaxValue`)."""
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True, slots=True)
class ScheduleStatus:
    last: datetime
    next: datetime
    last_updated: datetime

    def to_json(self) -> dict[str, str]:
        """The status as the host hands it to the worker (`ScheduleStatus` in the timer's JSON)."""
        return {
            "Last": self.last.isoformat(),
            "Next": self.next.isoformat(),
            "LastUpdated": self.last_updated.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScheduleStatus:
        return cls(
            last=datetime.fromisoformat(data["Last"]),
            next=datetime.fromisoformat(data["Next"]),
            last_updated=datetime.fromisoformat(data["LastUpdated"]),
        )


def next_occurrence(schedule: CronSchedule, after: datetime) -> datetime:
    """The schedule's next occurrence, or the far future for a schedule that never fires."""
    return schedule.next_after(after) or _FAR_FUTURE


class ScheduleMonitor:
    """Schedule statuses by timer name, in files under one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, timer: str) -> Path:
        return self.folder / f"{_SAFE_NAME.sub('_', timer)}.json"

    async def get_status(self, timer: str) -> ScheduleStatus | None:
        """The last recorded status; None if there is none (or it cannot be read, as if new)."""

        def read() -> ScheduleStatus | None:
            try:
                return ScheduleStatus.from_json(json.loads(self.path(timer).read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError, TypeError):
                return None

        return await asyncio.to_thread(read)

    async def update_status(self, timer: str, status: ScheduleStatus) -> None:
        """Record `status` durably: a crash leaves the old record or the new one, never half of one."""

        def write() -> None:
            self.folder.mkdir(parents=True, exist_ok=True)
            target = self.path(timer)
            temporary = target.with_suffix(".tmp")
            with temporary.open("w", encoding="utf-8") as handle:
                json.dump(status.to_json(), handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
            with contextlib.suppress(OSError):  # the rename itself made durable, where the OS allows it
                directory = os.open(self.folder, os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)

        await asyncio.to_thread(write)

    async def check_past_due(
        self, timer: str, now: datetime, schedule: CronSchedule, last: ScheduleStatus | None
    ) -> tuple[ScheduleStatus, timedelta]:
        """The status to start from, and how far past due the timer is (zero when it is not)."""
        if last is None:
            # A new timer: record the next occurrence now, so one missed before the first
            # run is still caught.
            status = ScheduleStatus(last=NEVER, next=next_occurrence(schedule, now), last_updated=now)
            await self.update_status(timer, status)
        else:
            if last.last != NEVER:
                basis = last.last
            elif last.last_updated != NEVER:
                basis = last.last_updated
            else:
                basis = now
            expected = next_occurrence(schedule, basis)
            status = last
            if last.next != expected:
                # The schedule changed: a recomputed occurrence already passed is not "missed".
                if now > expected:
                    expected, basis = next_occurrence(schedule, now), now
                status = ScheduleStatus(last=NEVER, next=expected, last_updated=basis)
                await self.update_status(timer, status)
        return status, (now - status.next if now > status.next else timedelta(0))
