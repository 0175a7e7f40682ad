"""Adapters of the `PrivacyStore` port: suppressions and erasure records (SQLite, Table Storage)."""
