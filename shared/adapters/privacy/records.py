"""The text form both privacy adapters store an erasure's steps in (JSON, one object per step)."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from shared.domain.privacy import StepResult

__all__ = ["steps_from_json", "steps_to_json"]


def steps_to_json(steps: Mapping[str, StepResult]) -> str:
    """`{"events": {"found": 3, "removed": 3, "done": true, "detail": null}, ...}`."""
    return orjson.dumps(
        {
            name: {"found": result.found, "removed": result.removed, "done": result.done, "detail": result.detail}
            for name, result in steps.items()
        }
    ).decode()


def steps_from_json(text: str) -> dict[str, StepResult]:
    """What `steps_to_json` wrote; raises `ValueError` (or `orjson.JSONDecodeError`) if it is damaged."""
    raw = orjson.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("erasure steps are not a JSON object")
    return {
        str(name): StepResult(
            found=None if value.get("found") is None else int(value["found"]),
            removed=int(value.get("removed", 0)),
            done=bool(value.get("done", False)),
            detail=value.get("detail"),
        )
        for name, value in raw.items()
    }
