"""The change-feed stage: stored events into the analytics store (Data Explorer, or embedded)."""

from changefeed.blueprint import bp

__all__ = ["bp"]
