"""Reading what an in-memory OpenTelemetry metric reader collected, in tests."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

__all__ = ["Attributes", "counter_values"]

Attributes = tuple[tuple[str, Any], ...]
"""A data point's attributes, sorted: a dictionary key."""


def counter_values(reader: InMemoryMetricReader, name: str) -> dict[Attributes, float]:
    """The value of counter `name` per set of attributes (empty if nothing was recorded)."""
    data = reader.get_metrics_data()
    found: dict[Attributes, float] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        found[tuple(sorted((point.attributes or {}).items()))] = point.value  # type: ignore[union-attr]
    return found
