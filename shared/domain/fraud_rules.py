"""Fraud rule sets read from JSON: the built-in `fraud_rules.json`, a file, or bytes.

The file's shape is `FraudRuleSet`'s (`shared.domain.fraud`): the rules and the
`suspiciousThreshold`. A file is validated whole, and an invalid one fails with one
`FraudRulesError` naming each wrong rule and field (never the inputs pydantic would repeat).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Final

import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from shared.domain.fraud import RULE_KINDS, FraudRuleSet

__all__ = ["DEFAULT_RULES_RESOURCE", "FraudRulesError", "default_rules", "rules_from_bytes", "rules_from_path"]

DEFAULT_RULES_RESOURCE: Final = "fraud_rules.json"
"""The built-in rule set, a data file of the `shared.domain` package."""


class FraudRulesError(ValueError):
    """A rules file is unreadable or invalid; the message names the rule and the field."""


def default_rules() -> FraudRuleSet:
    """The built-in rules (`shared/domain/fraud_rules.json`)."""
    data = resources.files(__package__ or "shared.domain").joinpath(DEFAULT_RULES_RESOURCE).read_bytes()
    return rules_from_bytes(data, source=f"the built-in {DEFAULT_RULES_RESOURCE}")


def rules_from_path(path: Path | str) -> FraudRuleSet:
    """Rules from a JSON file (the shape of the built-in one)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FraudRulesError(f"cannot read fraud rules file {str(path)!r}: {exc.strerror or exc}") from exc
    return rules_from_bytes(data, source=str(path))


def rules_from_bytes(data: bytes, *, source: str = "the given rules") -> FraudRuleSet:
    """Rules from JSON text; `source` names it in error messages."""
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FraudRulesError(f"fraud rules in {source} are not valid JSON: {exc}") from None
    try:
        return FraudRuleSet.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_where(error['loc'], error['type'], raw)}: {_message(error)}" for error in exc.errors())
        # `from None`: pydantic's own text repeats every input; the message above says it all.
        raise FraudRulesError(f"invalid fraud rules in {source}: {problems}") from None


def _message(error: ErrorDetails) -> str:
    if error["type"] == "union_tag_not_found":
        # pydantic says "Unable to extract tag using discriminator 'kind'": say what is expected.
        return f"Field required; one of {', '.join(RULE_KINDS)}"
    return error["msg"]


def _where(loc: tuple[int | str, ...], error_type: str, raw: Any) -> str:
    """Name the place of a validation error: `rule 'ip-velocity' (rules[0]) weight`."""
    if len(loc) < 2 or loc[0] != "rules" or not isinstance(loc[1], int):
        return ".".join(str(part) for part in loc) or "rule set"
    index = loc[1]
    rule = raw["rules"][index] if isinstance(raw, dict) and isinstance(raw.get("rules"), list) else None
    rule_id = rule.get("id") if isinstance(rule, dict) else None
    name = f"rule {rule_id!r} (rules[{index}])" if isinstance(rule_id, str) else f"rules[{index}]"
    rest = [str(part) for part in loc[2:]]
    # pydantic puts the matched `kind` into the path of a tagged union's errors; readers don't need it.
    if rest and isinstance(rule, dict) and rest[0] == rule.get("kind"):
        rest = rest[1:]
    if not rest and error_type in ("union_tag_invalid", "union_tag_not_found"):
        rest = ["kind"]
    return " ".join([name, ".".join(rest)]) if rest else name
