"""The Segment-compatible API (`/api/v1/batch`, `track`, `page`, `screen`, `identify`, `group`, `alias`).

`mapping` turns one Segment message into our event (pure); `reader` turns a request body into
messages (gzip, Segment's size limits); `ingest.segment_blueprint` holds the HTTP functions.
"""
