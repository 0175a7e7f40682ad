"""The embedded change feed's ranges: which range a partition key's events go to, and the file's count.

Cosmos DB splits a container's change feed by physical partition (partition key range), and
the change feed processor keeps one lease per range, so instances can share the feed while
each partition key's changes stay in order. The embedded store splits its feed the same way,
into a fixed number of ranges chosen when the file is created: an event goes to range
`crc32(utf-8 partition key) mod count`. The hash must be the same in every process and every
Python run (`hash()` is salted per process), and the count must never change for a file,
or a partition key's events would move between ranges and lose their order.
"""

from __future__ import annotations

import sqlite3
import zlib

__all__ = ["DEFAULT_FEED_RANGES", "feed_range_of", "prepare_feed_ranges"]

DEFAULT_FEED_RANGES = 4
"""Enough for the feed to spread over the instances of one machine (`CLOUDSCALE_FEED_RANGES`)."""


def feed_range_of(partition_key: str, count: int) -> int:
    """The range (0 to `count` - 1) whose lease carries `partition_key`'s changes."""
    return zlib.crc32(partition_key.encode("utf-8")) % count


def prepare_feed_ranges(connection: sqlite3.Connection, wanted: int) -> int:
    """Record the file's range count (`wanted` unless it has one), give every event its range; the count.

    One write transaction, so several processes opening a file at once agree on the count,
    and a file written before ranges existed is migrated once: its events table gains the
    `feed_range` column, filled for every stored event from its tenant.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute("CREATE TABLE IF NOT EXISTS feed_settings (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        connection.execute("INSERT OR IGNORE INTO feed_settings (name, value) VALUES ('ranges', ?)", (wanted,))
        count = int(connection.execute("SELECT value FROM feed_settings WHERE name = 'ranges'").fetchone()[0])
        columns = {row[1] for row in connection.execute("PRAGMA table_info(events)")}
        if "feed_range" not in columns:
            connection.execute("ALTER TABLE events ADD COLUMN feed_range INTEGER NOT NULL DEFAULT 0")
            tenants = [row[0] for row in connection.execute("SELECT DISTINCT tenant_id FROM events")]
            connection.executemany(
                "UPDATE events SET feed_range = ? WHERE tenant_id = ?",
                [(feed_range_of(tenant, count), tenant) for tenant in tenants],
            )
        # One range's changes in commit order, without reading the others'.
        connection.execute("CREATE INDEX IF NOT EXISTS events_by_feed_range ON events (feed_range, seq)")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return count
