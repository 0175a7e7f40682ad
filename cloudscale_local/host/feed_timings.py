"""A Cosmos DB trigger's lease and polling intervals, from its binding.

The Python v2 decorator (`cosmos_db_trigger`) writes `feedPollDelay`, `leaseAcquireInterval`,
`leaseExpirationInterval` and `leaseRenewInterval` into the binding, in milliseconds. The
extension's listener passes each to the change feed processor only when it is above 0;
otherwise the processor's default applies (`CosmosDBTriggerListener.InitializeBuilder`;
`ChangeFeedLeaseOptions` and `ChangeFeedProcessorOptions` in the Cosmos DB SDK).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["FeedTimings"]


@dataclass(frozen=True, slots=True)
class FeedTimings:
    """In seconds; the defaults are the change feed processor's."""

    acquire_interval: float = 13.0
    """How often an instance balances: reads all leases, takes free ones or steals one."""
    expiration_interval: float = 60.0
    """A lease not written for this long is free for any instance to take."""
    renew_interval: float = 17.0
    """How often an owner stamps each of its leases as alive."""
    feed_poll_delay: float = 5.0
    """How long a lease's loop waits before reading again once it found no changes."""

    @classmethod
    def from_binding(cls, spec: Mapping[str, object]) -> FeedTimings:
        """The binding's intervals (milliseconds), each only when above 0."""
        defaults = cls()

        def seconds(key: str, default: float) -> float:
            value = spec.get(key)
            milliseconds = float(value) if isinstance(value, int | float | str) and str(value).strip() else 0.0
            return milliseconds / 1000 if milliseconds > 0 else default

        return cls(
            acquire_interval=seconds("leaseAcquireInterval", defaults.acquire_interval),
            expiration_interval=seconds("leaseExpirationInterval", defaults.expiration_interval),
            renew_interval=seconds("leaseRenewInterval", defaults.renew_interval),
            feed_poll_delay=seconds("feedPollDelay", defaults.feed_poll_delay),
        )
