"""What the local host keeps of recent ingest requests: the last accepted and rejected events.

The Snowplow Micro idea (good and bad events kept for a developer to look at), for the
dashboard, `cloudscale tail` and `/dashboard/api/{good,bad,all}`. A `LiveEvent` is one event
of one request, as ingest saw it: accepted (the event as validated) or rejected (the item as
sent, with the reasons). A request refused as a whole (401, 413, 415, 429, malformed JSON) is
kept as one rejected entry per item it carried, or a single entry without an event when its
body did not parse.

Never kept: the write key (a `writeKey` member of an item is dropped), the client's address
or anything derived from it (a Segment message's `context.ip` is kept as its network, as a
stored event holds it), the raw body of a request that did not parse (it may be anything).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from shared.domain.client_identity import UNKNOWN_NETWORK, anonymize_address
from shared.domain.events import Event

__all__ = [
    "LIVE_EVENT_OUTCOMES",
    "SECRET_MEMBERS",
    "LiveEvent",
    "LiveEventFilter",
    "LiveEventOutcome",
    "LiveEventReason",
]

LiveEventOutcome = Literal["accepted", "rejected"]
LIVE_EVENT_OUTCOMES: tuple[LiveEventOutcome, ...] = ("accepted", "rejected")

SECRET_MEMBERS = frozenset({"writeKey", "write_key"})
"""Members of an item that are never kept (a browser key may ride in the body)."""


@dataclass(frozen=True, slots=True)
class LiveEventReason:
    """Why an event was rejected: a field error (`field` set) or the request's refusal (`field` None)."""

    code: str
    message: str
    field: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "field": self.field}


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One event of one ingest request, accepted or rejected."""

    at: datetime
    """When ingest received the request (UTC)."""
    outcome: LiveEventOutcome
    api: str
    """Which ingest API took the request: `events` (our own) or `segment`."""
    status: int
    """The HTTP status the request was answered with (202 for a batch with some rejected items)."""
    tenant_id: str | None = None
    event_type: str | None = None
    event_id: str | None = None
    reasons: tuple[LiveEventReason, ...] = ()
    event: Event | Mapping[str, Any] | None = None
    """The event as validated (accepted) or the item as sent (rejected); None when the body did
    not parse. Kept as given (turning it into JSON is left to the store, off the request's path)
    and read back as a mapping; `document()` drops `SECRET_MEMBERS`."""
    seq: int = 0
    """Its place in the log (increasing across every instance); 0 until stored."""

    def to_dict(self) -> dict[str, object]:
        """The JSON shape served over HTTP and printed by `cloudscale tail --json`."""
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "outcome": self.outcome,
            "api": self.api,
            "status": self.status,
            "tenantId": self.tenant_id,
            "eventType": self.event_type,
            "eventId": self.event_id,
            "reasons": [reason.to_dict() for reason in self.reasons],
            "event": self.document(),
        }

    def document(self) -> dict[str, Any] | None:
        """The event as JSON-ready data, without `SECRET_MEMBERS`; None when there is none."""
        if self.event is None:
            return None
        if isinstance(self.event, Event):
            data: dict[str, Any] = self.event.model_dump(mode="json", by_alias=True, exclude_none=True)
        else:
            data = dict(self.event)
        kept = {name: value for name, value in data.items() if name not in SECRET_MEMBERS}
        context = kept.get("context")
        if isinstance(context, Mapping) and "ip" in context:
            # A rejected Segment message as sent: its `context.ip` becomes the network, as the
            # mapping does for one accepted (`ingest.segment.mapping`).
            kept["context"] = {**context, "ip": _network(context["ip"])}
        return kept


def _network(ip: object) -> str:
    """The network of an address; a network (what a stored event holds, read back) as it is."""
    if not isinstance(ip, str):
        return UNKNOWN_NETWORK
    if ip == UNKNOWN_NETWORK:
        return ip
    with contextlib.suppress(ValueError):
        network = ipaddress.ip_network(ip)
        if network.prefixlen < network.max_prefixlen:
            # One narrower than a stored event's (/24, /48) names the client nearly as its address does.
            widest = anonymize_address(str(network.network_address))
            return str(network) if network.prefixlen <= ipaddress.ip_network(widest).prefixlen else widest
    return anonymize_address(ip)


@dataclass(frozen=True, slots=True)
class LiveEventFilter:
    """Which kept events a reader wants; None matches anything."""

    tenant_id: str | None = None
    event_type: str | None = None
    outcome: LiveEventOutcome | None = None
