"""Suppressions and erasure records in Table Storage."""

from __future__ import annotations

from collections.abc import Sequence

from shared.domain.privacy import ErasureRequest, Suppression
from shared.settings import Settings

__all__ = ["TablePrivacyStore", "create_table_privacy_store"]


class TablePrivacyStore:
    """The `PrivacyStore` port on Table Storage."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def subject_key(self) -> bytes:
        raise NotImplementedError

    async def suppressions(self, tenant_id: str) -> Sequence[Suppression]:
        raise NotImplementedError

    async def get_suppression(self, tenant_id: str, subject_hash: str) -> Suppression | None:
        raise NotImplementedError

    async def save_suppression(self, suppression: Suppression) -> None:
        raise NotImplementedError

    async def create_erasure(self, request: ErasureRequest) -> None:
        raise NotImplementedError

    async def get_erasure(self, erasure_id: str) -> ErasureRequest | None:
        raise NotImplementedError

    async def list_erasures(self, *, unfinished_only: bool = False) -> Sequence[ErasureRequest]:
        raise NotImplementedError

    async def replace_erasure(self, request: ErasureRequest) -> ErasureRequest:
        raise NotImplementedError

    async def check(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass


def create_table_privacy_store(settings: Settings) -> TablePrivacyStore:
    return TablePrivacyStore(settings)
