"""`shared.domain.dead_letter_reasons`: one list of every reason a message is dead-lettered with."""

from __future__ import annotations

import ast
from pathlib import Path

from shared.domain import dead_letter_reasons
from shared.domain.dead_letter_reasons import BROKER_REASONS, MAX_DELIVERY_COUNT_EXCEEDED, POISON_REASONS

REPOSITORY = Path(__file__).resolve().parents[2]


def test_every_reason_is_poison_or_the_brokers_and_named_once() -> None:
    reasons = [value for name, value in vars(dead_letter_reasons).items() if name.isupper() and isinstance(value, str)]

    assert sorted(reasons) == sorted({*POISON_REASONS, *BROKER_REASONS})
    assert len(set(reasons)) == len(reasons)


def test_the_embedded_queue_names_its_reason_as_service_bus_does() -> None:
    assert MAX_DELIVERY_COUNT_EXCEEDED == "MaxDeliveryCountExceeded"


def test_no_reason_is_spelled_out_anywhere_else() -> None:
    """GIVEN the app's modules WHEN one holds a reason as a string literal THEN it is this module."""
    everything = {*POISON_REASONS, *BROKER_REASONS}
    found = [
        f"{path.relative_to(REPOSITORY)}: {node.value}"
        for folder in ("shared", "ingest", "process", "changefeed", "privacy", "cloudscale_local")
        for path in (REPOSITORY / folder).rglob("*.py")
        if not path.name.startswith("test_") and path.name != "dead_letter_reasons.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and node.value in everything
    ]

    assert found == []
