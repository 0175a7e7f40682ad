"""The `TenantRegistry` port: tenants and the hashes of their write keys.

Azure: `tables_registry` (Table Storage). Embedded: `embedded_registry` (SQLite).
`test_registry_contract` runs the same assertions against both (Azurite for Table Storage).
"""
