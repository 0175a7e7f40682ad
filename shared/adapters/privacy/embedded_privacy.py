"""Suppressions and erasure records in a SQLite file of the data folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from shared.domain.privacy import ErasureRequest, Suppression

__all__ = ["PRIVACY_FILE", "EmbeddedPrivacyStore"]

PRIVACY_FILE = "privacy.sqlite3"


class EmbeddedPrivacyStore:
    """The `PrivacyStore` port on SQLite."""

    def __init__(self, path: Path) -> None:
        self.path = path

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
