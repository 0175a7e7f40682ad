"""The scoring recipe: a queued event in, the stored event out, with nothing read from outside."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from shared.domain.envelope import Envelope
from shared.domain.events import Event
from shared.domain.fraud_rules import default_rules
from shared.domain.scoring import score_event

RECEIVED_AT = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PROCESSED_AT = RECEIVED_AT + timedelta(milliseconds=250)
ENQUEUED_AT = RECEIVED_AT + timedelta(milliseconds=20)
RULES = default_rules()
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def envelope(*, requests_last_minute: int = 1, user_agent: str = CHROME) -> Envelope:
    return Envelope(
        event=Event.model_validate(
            {"eventType": "page_view", "tenantId": "acme", "eventId": str(uuid4()), "url": "/home", "userId": "u-1"}
        ),
        received_at=RECEIVED_AT,
        client_network="203.0.113.0/24",
        client_key="k" * 16,
        user_agent=user_agent,
        ip_requests_last_minute=requests_last_minute,
        trace_context={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )


def test_a_clean_event_is_stored_as_sent_with_its_enrichment_and_a_zero_score() -> None:
    queued = envelope()

    stored = score_event(queued, RULES, processed_at=PROCESSED_AT, enqueued_at=ENQUEUED_AT, distinct_users_from_ip=1)

    assert (stored.id, stored.event_id, stored.tenant_id) == (str(queued.event.event_id),) * 2 + ("acme",)
    assert stored.timestamp == RECEIVED_AT, "no timestamp sent: the receive time"
    assert stored.enrichment.processed_at == PROCESSED_AT
    assert stored.enrichment.enqueued_at == ENQUEUED_AT
    assert stored.enrichment.queue_latency_ms == 250.0
    assert stored.enrichment.agent is not None
    assert stored.enrichment.agent.browser == "Chrome"
    assert (stored.fraud.score, stored.fraud.suspicious, stored.fraud.reasons) == (0.0, False, ())
    assert stored.trace_context == queued.trace_context


def test_the_parsed_user_agent_is_a_fraud_signal() -> None:
    stored = score_event(
        envelope(user_agent=GOOGLEBOT),
        RULES,
        processed_at=PROCESSED_AT,
        enqueued_at=None,
        distinct_users_from_ip=1,
    )

    assert stored.enrichment.agent is not None
    assert stored.enrichment.agent.is_bot
    assert [reason.code for reason in stored.fraud.reasons] == ["BOT_USER_AGENT"]
    assert stored.fraud.suspicious


def test_the_velocity_and_distinct_users_signals_come_from_the_inputs() -> None:
    stored = score_event(
        envelope(requests_last_minute=11),
        RULES,
        processed_at=PROCESSED_AT,
        enqueued_at=ENQUEUED_AT,
        distinct_users_from_ip=50,
    )

    assert [reason.code for reason in stored.fraud.reasons] == ["VELOCITY_IP_MINUTE", "DISTINCT_USERS_PER_IP"]
    assert stored.fraud.suspicious


def test_the_same_inputs_make_the_same_document() -> None:
    queued = envelope(requests_last_minute=12)

    first, second = (
        score_event(queued, RULES, processed_at=PROCESSED_AT, enqueued_at=ENQUEUED_AT, distinct_users_from_ip=3)
        for _ in range(2)
    )

    assert first == second
