"""Security alerts: one line per new (rule, client) in a window, the rest counted."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from process.security_alerts import SecurityAlerts
from shared.domain.stored_event import StoredEvent

VELOCITY = {"rule": "ip-velocity", "code": "VELOCITY_IP_MINUTE", "weight": 0.8, "description": "many requests"}
BOT = {"rule": "bot-user-agent", "code": "BOT_USER_AGENT", "weight": 0.7, "description": "a crawler"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def suspicious(*reasons: dict[str, Any]) -> StoredEvent:
    event_id = str(uuid.uuid4())
    return StoredEvent.from_document(
        {
            "id": event_id,
            "eventId": event_id,
            "tenantId": "acme",
            "eventType": "page_view",
            "timestamp": "2026-03-01T12:00:00Z",
            "enrichment": {
                "clientNetwork": "203.0.113.0/24",
                "receivedAt": "2026-03-01T12:00:00Z",
                "processedAt": "2026-03-01T12:00:01Z",
                "queueLatencyMs": 1.0,
            },
            "fraud": {"score": 0.8, "suspicious": True, "reasons": list(reasons)},
        }
    )


def alerts_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "cloudscale.security"]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_flood_from_one_client_logs_one_line_per_window_and_counts_the_rest(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN one client tripping the velocity rule 10,000 times in a minute
    alerts = SecurityAlerts(window_seconds=60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="cloudscale.security"):
        for _ in range(10_000):
            alerts.alert(suspicious(VELOCITY), "client-a", redelivered=False)
            clock.now += 0.005
        # WHEN the window has passed and the client trips it again
        clock.now += 60
        alerts.alert(suspicious(VELOCITY), "client-a", redelivered=False)

    # THEN two lines, the second saying how many were left out
    first, second = alerts_logged(caplog)
    assert first.__dict__["suppressed"] == 0
    assert second.__dict__["suppressed"] == 9_999
    assert "9999 more from this client" in second.getMessage()


def test_each_new_client_and_each_new_rule_is_logged_at_once(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    alerts = SecurityAlerts(clock=clock)
    with caplog.at_level(logging.WARNING, logger="cloudscale.security"):
        assert alerts.alert(suspicious(VELOCITY), "client-a", redelivered=False)
        assert alerts.alert(suspicious(VELOCITY), "client-b", redelivered=False)
        assert not alerts.alert(suspicious(VELOCITY), "client-a", redelivered=False)
        # a rule this client has not tripped in the window yet
        assert alerts.alert(suspicious(VELOCITY, BOT), "client-a", redelivered=False)
        assert not alerts.alert(suspicious(VELOCITY, BOT), "client-a", redelivered=False)
    assert [record.__dict__["clientKey"] for record in alerts_logged(caplog)] == ["client-a", "client-b", "client-a"]


def test_memory_is_bounded_and_an_unremembered_pair_is_logged_not_lost(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    alerts = SecurityAlerts(max_pairs=3, clock=clock)
    with caplog.at_level(logging.WARNING, logger="cloudscale.security"):
        for client in ("a", "b", "c", "d"):
            alerts.alert(suspicious(VELOCITY), client, redelivered=False)
        # "a" was forgotten to make room for "d": it is logged again rather than counted silently
        assert alerts.alert(suspicious(VELOCITY), "a", redelivered=False)
    assert len(alerts_logged(caplog)) == 5


def test_an_alert_names_no_personal_data(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    event = suspicious(VELOCITY).model_copy(update={"user_id": "alice@example.com", "url": "/account/alice"})
    with caplog.at_level(logging.WARNING, logger="cloudscale.security"):
        SecurityAlerts(clock=clock).alert(event, "client-a", redelivered=True)
    [record] = alerts_logged(caplog)
    text = record.getMessage() + repr(record.__dict__)
    assert "alice" not in text
    assert "/account" not in text
    assert "(redelivered)" in record.getMessage()
