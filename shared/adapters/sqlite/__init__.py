"""The SQLite machinery every embedded adapter shares (not a port): one connection on its own
thread with group commit, and the checks that refuse a damaged or unreadable file."""
