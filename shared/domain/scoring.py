"""The scoring recipe: one queued event in, the document to store out (enriched and scored).

Enrichment first (the parsed user agent is also a fraud signal), then the fraud rules over the
event's signals, then the stored event: the event as sent, what enrichment learned and the
fraud result. Pure: the times and the distinct-users count are passed in (the process stage
reads its clock and its tracker), so the same inputs always make the same document.
"""

from __future__ import annotations

from datetime import datetime

from shared.domain.enrichment import enrich
from shared.domain.envelope import Envelope
from shared.domain.fraud import FraudRuleSet, FraudSignals
from shared.domain.stored_event import StoredEvent, build_stored_event

__all__ = ["score_event"]


def score_event(
    envelope: Envelope,
    rules: FraudRuleSet,
    *,
    processed_at: datetime,
    enqueued_at: datetime | None,
    distinct_users_from_ip: int,
) -> StoredEvent:
    """The stored event for `envelope`: enriched at `processed_at` and scored against `rules`.

    `distinct_users_from_ip` is the client's distinct users in the distinct-users rule's
    window, this event's included (0 when the rule set has no such rule).
    """
    enrichment = enrich(envelope, processed_at=processed_at, enqueued_at=enqueued_at)
    signals = FraudSignals.from_envelope(
        envelope, agent=enrichment.agent, distinct_users_from_ip=distinct_users_from_ip
    )
    return build_stored_event(envelope, enrichment, rules.evaluate(signals))
