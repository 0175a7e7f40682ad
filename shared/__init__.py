"""Shared code of every stage: settings, domain logic, ports and adapters, the composition root, telemetry."""
