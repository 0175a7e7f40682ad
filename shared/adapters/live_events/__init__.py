"""Adapters of `shared.ports.LiveEventLog` (embedded only: see the port)."""
