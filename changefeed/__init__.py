"""The change-feed stage: stored events into the analytics store (Data Explorer, or embedded)."""
