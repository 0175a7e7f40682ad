"""The process stage: Service Bus-triggered fraud scoring, enrichment and idempotent storage."""

from process.blueprint import bp

__all__ = ["bp"]
