"""Ingest stage: `POST /api/events` validates, rate-limits and queues events."""

from ingest.blueprint import bp

__all__ = ["bp"]
