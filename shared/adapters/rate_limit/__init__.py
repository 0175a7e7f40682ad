"""The `RateLimitStore` port: rate-limit state shared by every instance.

Azure: `tables_rate_limit` (Table Storage, optimistic concurrency on ETags).
Embedded: `embedded_rate_limit` (SQLite). `test_rate_limit_contract` runs the same
assertions against both (Azurite for Table Storage).
"""
