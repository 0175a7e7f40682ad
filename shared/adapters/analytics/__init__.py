"""The `AnalyticsSink` port (and `AnalyticsHistory`, the analytics read by commit time).

Azure: `kusto_sink` (streaming ingestion into Data Explorer), `kusto_history` (queries),
`kusto_schema` (the table and its deduplicating view). Embedded: `embedded_analytics`
(SQLite, one row per event). `test_analytics_contract` runs the same assertions against both
(the real azure-kusto-ingest client against a local recording endpoint for Data Explorer).
"""
