"""Readiness: can this instance accept events now? One probe per dependency, each with a budget.

The policy only: which checks there are, their budget, and the verdict they add up to. The
probes come from the composition root (`shared.assembly.readiness_probes`); the HTTP edge
(`ingest.http.readiness_response`) turns a report into a status code.

Two kinds of dependency:

- **critical** (the queue, the rate-limit store, the client-key secret): ingest cannot accept
  without them, so a failed probe makes the instance `unhealthy` and a load balancer should
  take it out;
- **non-critical** (the event store, analytics): they sit behind the queue, which absorbs
  their outage, so a failed probe only makes the pipeline `degraded` (still ready).

Each probe has `CHECK_BUDGET_SECONDS`, far above ingest's p99 (milliseconds; see
`docs/benchmarks.md`) and above the embedded stores' lock wait (`BUSY_TIMEOUT_SECONDS`): a probe
that is merely queued behind a busy writer still answers within it, as ingest does, so a busy
instance is not reported down while it still accepts.

The report has two views: `public()` carries only a status and a short reason code per check
(anonymous callers never see exception text or file paths), `detailed()` adds each error's text
for operators.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from shared.ports import PortError
from shared.settings import SettingsError

__all__ = [
    "CHECK_BUDGET_SECONDS",
    "CRITICAL_CHECKS",
    "CheckResult",
    "HealthReport",
    "Probe",
    "ReadinessProbes",
    "check_readiness",
    "misconfigured_report",
    "readiness",
]

logger = logging.getLogger(__name__)

CHECK_BUDGET_SECONDS = 12.0
"""Per probe. Above the Service Bus link-open bound (10 s) and the SQLite lock wait (5 s), so
those report their own error first; far above ingest's p99, so a busy instance still passes."""

CRITICAL_CHECKS = frozenset({"queue", "rateLimitStore", "clientKey"})
"""The checks whose failure makes the instance unready; the others only degrade the pipeline."""

Status = Literal["healthy", "degraded", "unhealthy"]
Reason = Literal["timeout", "unavailable", "misconfigured"]
Probe = Callable[[], Awaitable[None]]
"""Returns if the dependency can do what ingest needs of it, raises if not."""


@dataclass(frozen=True, slots=True)
class ReadinessProbes:
    """One probe per dependency ingest relies on.

    Each builds its adapter on first use, so an adapter that cannot be built fails its own
    probe and not the whole report.
    """

    queue: Probe
    rate_limit_store: Probe
    event_store: Probe
    analytics: Probe
    client_key: Probe
    """Ingest cannot key a client without its secret (on Azure a setting; locally a file)."""

    def by_name(self) -> dict[str, Probe]:
        """The probes under the names the report gives them."""
        return {
            "queue": self.queue,
            "rateLimitStore": self.rate_limit_store,
            "eventStore": self.event_store,
            "analytics": self.analytics,
            "clientKey": self.client_key,
        }


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One probe's outcome; `error` is for operators only."""

    healthy: bool
    reason: Reason | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Every probe's outcome and the verdict they add up to."""

    checks: Mapping[str, CheckResult]

    @property
    def status(self) -> Status:
        failed = {name for name, result in self.checks.items() if not result.healthy}
        if failed & CRITICAL_CHECKS or "settings" in failed:
            return "unhealthy"
        return "degraded" if failed else "healthy"

    @property
    def ready(self) -> bool:
        """Whether ingest can accept events: `degraded` still can."""
        return self.status != "unhealthy"

    def public(self) -> dict[str, object]:
        """The anonymous view: a status and a reason code per check, nothing else."""
        return {"status": self.status, "checks": {name: _public(result) for name, result in self.checks.items()}}

    def detailed(self) -> dict[str, object]:
        """The operators' view: the public one plus each failure's error text."""
        checks: dict[str, dict[str, str]] = {}
        for name, result in self.checks.items():
            check = _public(result)
            if result.error is not None:
                check["error"] = result.error
            checks[name] = check
        return {"status": self.status, "checks": checks}


def misconfigured_report() -> HealthReport:
    """The report when the settings cannot be loaded (no probe can be built)."""
    return HealthReport({"settings": CheckResult(False, "misconfigured", "invalid or missing settings; see the log")})


async def readiness(probes: Callable[[], ReadinessProbes], *, budget: float = CHECK_BUDGET_SECONDS) -> HealthReport:
    """This instance's readiness; `probes` builds the probes, and may fail for invalid settings."""
    try:
        built = probes()
    except SettingsError:
        logger.exception("the app is misconfigured")
        return misconfigured_report()
    return await check_readiness(built, budget=budget)


async def check_readiness(probes: ReadinessProbes, *, budget: float = CHECK_BUDGET_SECONDS) -> HealthReport:
    """Run every probe concurrently, each bounded by `budget` seconds."""
    named = probes.by_name()
    results = await asyncio.gather(*(_probe(name, probe, budget) for name, probe in named.items()))
    return HealthReport(dict(zip(named, results, strict=True)))


async def _probe(name: str, probe: Probe, budget: float) -> CheckResult:
    try:
        async with asyncio.timeout(budget):
            await probe()
    except TimeoutError:
        logger.warning("health check %s: no answer within %g s", name, budget)
        return CheckResult(False, "timeout", f"no answer within {budget:g} s")
    except PortError as error:
        logger.warning("health check %s failed: %s", name, error)
        return CheckResult(False, "unavailable", str(error) or type(error).__name__)
    except SettingsError as error:
        # The adapter could not be built (a missing or malformed setting).
        logger.warning("health check %s: misconfigured: %s", name, error)
        return CheckResult(False, "misconfigured", str(error))
    except Exception as error:
        # Building an adapter can fail too (a missing setting, a bad connection string): the
        # operator needs the text, an anonymous caller gets only the code.
        logger.exception("health check %s failed unexpectedly", name)
        return CheckResult(False, "unavailable", f"{type(error).__name__}: {error}")
    return CheckResult(True)


def _public(result: CheckResult) -> dict[str, str]:
    if result.healthy:
        return {"status": "healthy"}
    assert result.reason is not None  # every failed result is built with a reason
    return {"status": "unhealthy", "reason": result.reason}
