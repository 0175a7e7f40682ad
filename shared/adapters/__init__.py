"""Adapters for the ports in `shared.ports`: Azure services and embedded SQLite files."""
