"""An operator's view of the suppression list: each tenant's tombstones, and lifting one.

Lifting never lets erased data back: the tombstone becomes `delete` mode, so events received
before the erasure stay dropped wherever they come from, and only what the subject sends from
now on is accepted (`shared.domain.privacy.Suppression.lifted`). Every instance sees the change
within the suppression cache period.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from shared.domain.privacy import Subject, Suppression
from shared.ports import PrivacyStore

__all__ = ["SuppressionAdmin"]


class SuppressionAdmin:
    """Reads and lifts tombstones in the privacy store."""

    def __init__(
        self,
        store: PrivacyStore,
        secret: Callable[[], Awaitable[bytes]],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._secret = secret
        self._clock = clock

    async def list(self, tenant_id: str) -> Sequence[Suppression]:
        """The tenant's tombstones, oldest erasure first."""
        return sorted(await self._store.suppressions(tenant_id), key=lambda s: (s.erased_at, s.subject_hash))

    async def lift(self, subject: Subject) -> Suppression | None:
        """Accept the subject's new events again; the lifted tombstone, or None if it had none."""
        found = await self._store.get_suppression(subject.tenant_id, subject.hash(await self._secret()))
        if found is None:
            return None
        lifted = found.lifted(self._clock())
        if lifted != found:
            await self._store.save_suppression(lifted)
        return lifted
