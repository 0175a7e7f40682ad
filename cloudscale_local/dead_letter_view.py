"""A dead letter as JSON: what `cloudscale dlq list --json` prints and the dashboard's list serves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from shared.ports import DeadLetter

__all__ = ["dead_letter_summary", "parsed_body"]


def dead_letter_summary(dead_letter: DeadLetter) -> dict[str, Any]:
    """Its id, where it came from, why it was parked, when, and the size of its body."""
    return {
        "id": dead_letter.id,
        "source": dead_letter.source,
        "messageId": dead_letter.message_id,
        "reason": dead_letter.reason,
        "description": dead_letter.description,
        "deliveryCount": dead_letter.delivery_count,
        "enqueuedAt": _iso(dead_letter.enqueued_at),
        "deadLetteredAt": _iso(dead_letter.dead_lettered_at),
        "bodyBytes": len(dead_letter.body),
    }


def parsed_body(dead_letter: DeadLetter) -> Any:
    """The message's body parsed as JSON; None when it is not JSON (an undecodable message)."""
    try:
        return orjson.loads(dead_letter.message.body)
    except orjson.JSONDecodeError:
        return None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
