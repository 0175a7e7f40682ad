"""Analytics erased by data subject on Data Explorer: `.purge` of the table and the view."""

from __future__ import annotations

from shared.domain.privacy import Subject
from shared.ports import AnalyticsErasure
from shared.settings import Settings

__all__ = ["KustoAnalyticsEraser", "create_kusto_eraser"]


class KustoAnalyticsEraser:
    """The `AnalyticsEraser` port on Data Explorer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def count_subject_rows(self, subject: Subject) -> int:
        raise NotImplementedError

    async def erase_subject_rows(self, subject: Subject) -> AnalyticsErasure:
        raise NotImplementedError

    async def close(self) -> None:
        pass


def create_kusto_eraser(settings: Settings) -> KustoAnalyticsEraser:
    return KustoAnalyticsEraser(settings)
