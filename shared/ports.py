"""Ports: the small interfaces every external system sits behind.

Each port has two real adapters in `shared.adapters`: one on Azure services and one embedded
(SQLite under the data folder). Adapters translate vendor errors into the errors below
(`raise PortError(...) from exc`), so callers never see an SDK exception.

Error tree::

    PortError                  a dependency failed; the request may succeed later
    ├── PublishError           the queue did not take the messages (nothing was acknowledged)
    └── RateLimitStoreError    limiter state could not be read or written
        └── ContentionError    optimistic concurrency kept losing; retry later
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from shared.domain.envelope import QueueMessage
from shared.domain.ratelimit import ClientState, PeerWindow, SlotWindow

__all__ = [
    "ContentionError",
    "EventPublisher",
    "PortError",
    "PublishError",
    "RateLimitStore",
    "RateLimitStoreError",
]

T = TypeVar("T")


class PortError(Exception):
    """A dependency failed. Transient unless a subclass says otherwise."""


class PublishError(PortError):
    """The queue did not durably take the messages."""


class RateLimitStoreError(PortError):
    """Rate-limit state could not be read or written."""


class ContentionError(RateLimitStoreError):
    """Concurrent writers kept winning the optimistic-concurrency race."""


class EventPublisher(Protocol):
    """Sends queue messages. Returns only once the broker has durably accepted all of them."""

    async def publish(self, messages: Sequence[QueueMessage]) -> None: ...

    async def check(self) -> None:
        """Raise `PortError` if the queue cannot be reached."""
        ...

    async def close(self) -> None: ...


class RateLimitStore(Protocol):
    """Shared rate-limit state, so limits hold across instances."""

    async def update_client(self, client_key: str, change: Callable[[ClientState | None], tuple[ClientState, T]]) -> T:
        """Atomically apply `change` to one client's state and return its second value.

        `change` is pure and may run more than once (optimistic concurrency retries it
        against the fresh state).
        """
        ...

    async def exchange_window(
        self,
        instance_id: str,
        window: SlotWindow,
        now: float,
        reserve: Callable[[Sequence[PeerWindow]], int],
    ) -> Sequence[PeerWindow]:
        """Read every instance's recent record, then write this one's.

        The record written holds `window` and, as its reservation, `reserve(records read)`;
        the records read are returned. Read before write, so the claim is computed from
        what the others hold (see `shared.domain.ratelimit.share_quota`).
        """
        ...

    async def check(self) -> None:
        """Raise `PortError` if the store cannot be reached."""
        ...

    async def close(self) -> None: ...
