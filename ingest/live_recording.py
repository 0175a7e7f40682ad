"""What ingest keeps of each request for a developer to watch, and the rejected-events counter.

Every request's items become `LiveEvent`s handed to the `LiveEventLog` (embedded only; on
Azure there is none): an accepted item as the `Event` it was validated into, a rejected one as
the item it was (with its field errors as reasons), and every item of a request refused as a
whole with the refusal as its reason (or one entry without an event when the body did not
parse). Every rejected event is also counted in `cloudscale_events_rejected_total{reason}`,
on every backend.

On the request's path, so cheap: a few small objects per item and references to what the
request already holds. Nothing is serialised here; the log turns the newest of them into JSON
later, off the path (`shared.adapters.live_events.embedded`).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from opentelemetry.metrics import Counter

from ingest.errors import IngestError, InvalidEventsError
from ingest.validation import FieldError, Unmappable
from shared.domain.events import Event
from shared.domain.live_events import LiveEvent, LiveEventReason
from shared.ports import LiveEventLog

__all__ = ["EVENTS_API", "LiveRecorder", "RequestProgress", "StatusOf"]

EVENTS_API: Final = "events"
"""Our own API's name in a `LiveEvent` (`POST /api/events`); the Segment-compatible one is `segment`."""

ACCEPTED_STATUS: Final = 202
"""The status of a request whose events were (partly) accepted, as `LiveEvent.status` reports it.
The Segment-compatible API answers 200 for the same outcome; its entries say 200."""

StatusOf = Callable[[IngestError], int]
"""The HTTP status a refused request is answered with (`ingest.http.status_for`, given by the
composition root: the use case speaks no HTTP)."""


@dataclass(slots=True)
class RequestProgress:
    """How far one request got, filled in by the use case as it goes: what a refusal can keep."""

    items: Sequence[Any] | None = None
    """The body's items, once it parsed."""
    item_errors: dict[int, list[FieldError]] = field(default_factory=dict)
    """Each rejected item's field errors, by index, once validated."""
    events: dict[int, Event] = field(default_factory=dict)
    """Each accepted item's event, by index, once validated."""
    tenant_id: str | None = None
    """The producer's tenant, once its key was checked."""
    received_at: datetime | None = None


class LiveRecorder:
    """Turns a request's outcome into kept `LiveEvent`s and rejected-event counts."""

    def __init__(
        self,
        log: LiveEventLog | None,
        rejected: Counter,
        status_of: StatusOf,
        clock: Callable[[], datetime],
        *,
        accepted_status: Mapping[str, int] | None = None,
    ) -> None:
        """`log`: where the events go (None: counted only). `accepted_status`: the status each
        API answers a request with accepted events (default 202; `segment` answers 200)."""
        self._log = log
        self._events_rejected = rejected
        self._status_of = status_of
        self._clock = clock
        self._accepted_status = {"segment": 200, **(accepted_status or {})}

    def accepted(self, api: str, progress: RequestProgress) -> None:
        """The request was answered with its accepted events queued (some items may be rejected)."""
        reasons: collections.Counter[str] = collections.Counter(
            errors[0].type for errors in progress.item_errors.values() if errors
        )
        self._count(reasons)
        if self._log is None or progress.items is None:
            return
        status = self._accepted_status.get(api, ACCEPTED_STATUS)
        at = progress.received_at or self._clock()
        kept: list[LiveEvent] = []
        for index, item in enumerate(progress.items):
            event = progress.events.get(index)
            if event is not None:
                kept.append(
                    LiveEvent(
                        at=at,
                        outcome="accepted",
                        api=api,
                        status=status,
                        tenant_id=event.tenant_id,
                        event_type=event.event_type,
                        event_id=str(event.event_id),
                        event=event,
                    )
                )
            else:
                kept.append(self._rejected_item(api, status, at, item, progress, _field_reasons(progress, index)))
        self._log.record(kept)

    def refused(self, api: str, error: IngestError, progress: RequestProgress) -> None:
        """The request was refused as a whole with `error` (answered with its status)."""
        status = self._status_of(error)
        request_reason = (LiveEventReason(error.code, error.message),)
        at = progress.received_at or self._clock()
        kept: list[LiveEvent] = []
        reasons: collections.Counter[str] = collections.Counter()
        if progress.items is None:
            reasons[error.code] += 1
            if self._log is not None:
                kept.append(LiveEvent(at=at, outcome="rejected", api=api, status=status, reasons=request_reason))
        else:
            for index, item in enumerate(progress.items):
                # An item with its own field errors was rejected for them (all of them are, in
                # `invalid_events`); the others for the request's refusal.
                errors = progress.item_errors.get(index)
                if errors:
                    reasons[errors[0].type] += 1
                elif not isinstance(error, InvalidEventsError):
                    reasons[error.code] += 1
                if self._log is not None:
                    own = _field_reasons(progress, index)
                    kept.append(self._rejected_item(api, status, at, item, progress, own or request_reason))
        self._count(reasons)
        if self._log is not None:
            self._log.record(kept)

    def _count(self, reasons: collections.Counter[str]) -> None:
        for reason, count in reasons.items():
            self._events_rejected.add(count, {"reason": reason})

    @staticmethod
    def _rejected_item(
        api: str,
        status: int,
        at: datetime,
        item: Any,
        progress: RequestProgress,
        reasons: tuple[LiveEventReason, ...],
    ) -> LiveEvent:
        fields: Mapping[str, Any] | None
        if isinstance(item, Unmappable):
            fields = item.item if isinstance(item.item, Mapping) else None
            event_type = item.event_type
        else:
            fields = item if isinstance(item, Mapping) else None
            event_type = None
        if fields is not None and event_type is None:
            event_type = _text(fields.get("eventType"))
        named_tenant = None if fields is None else _text(fields.get("tenantId"))
        return LiveEvent(
            at=at,
            outcome="rejected",
            api=api,
            status=status,
            tenant_id=progress.tenant_id or named_tenant,
            event_type=event_type,
            event_id=None if fields is None else _text(fields.get("eventId")),
            reasons=reasons,
            event=fields,
        )


def _field_reasons(progress: RequestProgress, index: int) -> tuple[LiveEventReason, ...]:
    return tuple(
        LiveEventReason(error.type, error.message, error.field) for error in progress.item_errors.get(index, ())
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
