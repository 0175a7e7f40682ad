"""Fraud scoring: rules are data, evaluated in one pass over an event's signals.

A rule set (`fraud_rules.json` in this package, or a file named by
`CLOUDSCALE_FRAUD_RULES_FILE`; `shared.domain.fraud_rules` reads them) lists rules and the
`suspiciousThreshold`. Each rule names its evaluator (`kind`), that evaluator's `parameters`,
a `weight` in [0, 1] and a `reasonCode`. `FraudRuleSet.evaluate` runs every rule over a
`FraudSignals` value and combines the weights of the rules that fired with a noisy-or,
`1 - prod(1 - weight)`: the score stays in [0, 1] and another fired rule can only raise it.
The event is suspicious when the score reaches the threshold.

`shared.domain.distinct_users.DistinctUsersTracker` supplies the one signal that needs memory
across events (distinct users per client). Nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared.domain.distinct_users import DistinctUsersTracker
from shared.domain.envelope import Envelope
from shared.domain.stored_event import FraudReason, FraudResult, ParsedUserAgent

__all__ = [
    "DISTINCT_USERS_HEADROOM",
    "RULE_KINDS",
    "BotUserAgentRule",
    "DistinctUsersPerIpRule",
    "FraudRule",
    "FraudRuleSet",
    "FraudSignals",
    "IpVelocityRule",
    "TimestampSkewRule",
]

DISTINCT_USERS_HEADROOM: Final = 5
"""How many distinct users past the rule's limit a tracker keeps per client.

One past the limit is enough to decide; a few more let the reason say by how much.
"""

_SCORE_DIGITS: Final = 6
"""Scores are rounded so a lone rule of weight 0.7 scores exactly 0.7, not 0.7000000000000001."""


@dataclass(frozen=True, slots=True)
class FraudSignals:
    """What the rules look at, for one event."""

    ip_requests_last_minute: int
    """Requests from the client IP in the last minute, the current one included (from ingest)."""
    agent: ParsedUserAgent | None
    user_agent: str | None
    event_timestamp: datetime
    received_at: datetime
    distinct_users_from_ip: int
    """Distinct userIds from the client IP in the rule's window, this event's included."""

    @classmethod
    def from_envelope(
        cls, envelope: Envelope, *, agent: ParsedUserAgent | None, distinct_users_from_ip: int
    ) -> FraudSignals:
        """The signals of a queued event; an event without a timestamp happened when it was received."""
        return cls(
            ip_requests_last_minute=envelope.ip_requests_last_minute,
            agent=agent,
            user_agent=envelope.user_agent,
            event_timestamp=envelope.event.timestamp or envelope.received_at,
            received_at=envelope.received_at,
            distinct_users_from_ip=distinct_users_from_ip,
        )


# --- Rules: one model per kind, each with its parameters and its evaluation -------------------------

# JSON names only, unknown fields refused: a typo in a rules file must fail, not be ignored.
_CONFIG = ConfigDict(frozen=True, extra="forbid", validate_by_name=False, validate_by_alias=True, allow_inf_nan=False)

RuleId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
ReasonCode = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Z][A-Z0-9_]*$")]


class _Rule(BaseModel):
    """What every rule has; subclasses add `kind`, `parameters` and `evaluate`."""

    model_config = _CONFIG

    id: RuleId
    description: str = Field(min_length=1)
    weight: float = Field(ge=0, le=1)
    reason_code: ReasonCode = Field(alias="reasonCode")

    def evaluate(self, signals: FraudSignals) -> str | None:
        """None if the rule does not fire, else what was observed, for a person to read."""
        raise NotImplementedError


class IpVelocityParameters(BaseModel):
    model_config = _CONFIG

    max_requests_per_minute: int = Field(10, ge=1, alias="maxRequestsPerMinute")


class IpVelocityRule(_Rule):
    """Fires when the client IP sent more than `maxRequestsPerMinute` requests in the last minute."""

    kind: Literal["ip_velocity"]
    parameters: IpVelocityParameters

    def evaluate(self, signals: FraudSignals) -> str | None:
        # The count includes the current request: with a limit of 10, the 10th request is clean.
        limit = self.parameters.max_requests_per_minute
        observed = signals.ip_requests_last_minute
        if observed <= limit:
            return None
        return f"{observed} requests in the last minute from this client (more than {limit})"


class BotUserAgentParameters(BaseModel):
    model_config = _CONFIG

    user_agent_substrings: tuple[Annotated[str, StringConstraints(min_length=2)], ...] = Field(
        (), alias="userAgentSubstrings", description="Extra markers of bots, matched case-insensitively."
    )


class BotUserAgentRule(_Rule):
    """Fires for a user agent the parser calls a bot, or one containing a listed substring."""

    kind: Literal["bot_user_agent"]
    parameters: BotUserAgentParameters

    def evaluate(self, signals: FraudSignals) -> str | None:
        agent = signals.agent
        if agent is not None and agent.is_bot:
            return f"user agent is a known bot or crawler ({agent.browser or 'unnamed'})"
        if signals.user_agent:
            lowered = signals.user_agent.lower()
            for marker in self.parameters.user_agent_substrings:
                if marker.lower() in lowered:
                    return f"user agent contains {marker!r}, a listed bot marker"
        return None


class TimestampSkewParameters(BaseModel):
    model_config = _CONFIG

    max_ahead_seconds: float = Field(300.0, gt=0, alias="maxAheadSeconds")
    max_age_seconds: float = Field(86_400.0, gt=0, alias="maxAgeSeconds")


class TimestampSkewRule(_Rule):
    """Fires when the event's timestamp is too far ahead of, or behind, its receive time."""

    kind: Literal["timestamp_skew"]
    parameters: TimestampSkewParameters

    def evaluate(self, signals: FraudSignals) -> str | None:
        ahead = (signals.event_timestamp - signals.received_at).total_seconds()
        if ahead > self.parameters.max_ahead_seconds:
            return (
                f"event timestamp is {_duration(ahead)} ahead of the receive time "
                f"(more than {_duration(self.parameters.max_ahead_seconds)})"
            )
        if -ahead > self.parameters.max_age_seconds:
            return (
                f"event timestamp is {_duration(-ahead)} older than the receive time "
                f"(more than {_duration(self.parameters.max_age_seconds)})"
            )
        return None


class DistinctUsersPerIpParameters(BaseModel):
    model_config = _CONFIG

    max_distinct_users: int = Field(10, ge=1, alias="maxDistinctUsers")
    window_seconds: float = Field(600.0, gt=0, le=86_400, alias="windowSeconds")


class DistinctUsersPerIpRule(_Rule):
    """Fires when more than `maxDistinctUsers` userIds came from the client IP in the window."""

    kind: Literal["distinct_users_per_ip"]
    parameters: DistinctUsersPerIpParameters

    def evaluate(self, signals: FraudSignals) -> str | None:
        limit = self.parameters.max_distinct_users
        observed = signals.distinct_users_from_ip
        if observed <= limit:
            return None
        # The tracker stops counting at the headroom: from there the true number may be higher.
        count = f"{observed} or more" if observed >= limit + DISTINCT_USERS_HEADROOM else str(observed)
        return (
            f"{count} distinct users in the last {_duration(self.parameters.window_seconds)} "
            f"from this client (more than {limit})"
        )


FraudRule = Annotated[
    IpVelocityRule | BotUserAgentRule | TimestampSkewRule | DistinctUsersPerIpRule,
    Field(discriminator="kind"),
]
"""Any rule; its `kind` picks the model (an unknown kind is a validation error)."""

RULE_KINDS: Final[tuple[str, ...]] = tuple(
    get_args(model.model_fields["kind"].annotation)[0]
    for model in (IpVelocityRule, BotUserAgentRule, TimestampSkewRule, DistinctUsersPerIpRule)
)
"""Every rule `kind` there is an evaluator for."""


def _duration(seconds: float) -> str:
    """`300` -> "5 min", `301.2` -> "5 min 2 s", `86400` -> "24 h" (rounded up: the reasons say "more than")."""
    total = math.ceil(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{value} {unit}" for value, unit in ((hours, "h"), (minutes, "min"), (secs, "s")) if value]
    return " ".join(parts) or "0 s"


# --- The rule set ---------------------------------------------------------------------------------


class FraudRuleSet(BaseModel):
    """Validated fraud rules and the threshold; `evaluate` scores one event."""

    model_config = _CONFIG

    suspicious_threshold: float = Field(gt=0, le=1, alias="suspiciousThreshold")
    rules: tuple[FraudRule, ...]

    @model_validator(mode="after")
    def _rules_are_distinct(self) -> FraudRuleSet:
        ids = [rule.id for rule in self.rules]
        duplicates = sorted({rule_id for rule_id in ids if ids.count(rule_id) > 1})
        if duplicates:
            raise ValueError(f"rule ids must be unique; repeated: {', '.join(duplicates)}")
        # FraudSignals carries one distinct-users count, for one window.
        if sum(isinstance(rule, DistinctUsersPerIpRule) for rule in self.rules) > 1:
            raise ValueError("at most one rule may be of kind distinct_users_per_ip")
        return self

    def evaluate(self, signals: FraudSignals) -> FraudResult:
        """Run every rule once; a noisy-or of the fired rules' weights is the score."""
        reasons: list[FraudReason] = []
        clean = 1.0
        for rule in self.rules:
            observed = rule.evaluate(signals)
            if observed is not None:
                reasons.append(
                    FraudReason(rule=rule.id, code=rule.reason_code, weight=rule.weight, description=observed)
                )
                clean *= 1.0 - rule.weight
        score = round(1.0 - clean, _SCORE_DIGITS)
        return FraudResult(score=score, suspicious=score >= self.suspicious_threshold, reasons=tuple(reasons))

    def distinct_users_tracker(self, max_clients: int = 10_000) -> DistinctUsersTracker | None:
        """A tracker sized for this rule set's distinct-users rule, or None if it has none."""
        for rule in self.rules:
            if isinstance(rule, DistinctUsersPerIpRule):
                return DistinctUsersTracker(
                    window_seconds=rule.parameters.window_seconds,
                    max_users_per_client=rule.parameters.max_distinct_users + DISTINCT_USERS_HEADROOM,
                    max_clients=max_clients,
                )
        return None
