"""The process stage: Service Bus-triggered fraud scoring, enrichment and idempotent storage."""
