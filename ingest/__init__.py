"""Ingest stage: `POST /api/events` validates, rate-limits and queues events."""
