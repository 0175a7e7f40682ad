"""The rate-limit table's entities: their keys, and client state and instance windows to and from them.

- one entity per client, PartitionKey ``client:<escaped key>``, RowKey ``state``: every client
  has its own partition, so a busy client never throttles the others;
- one entity per instance in partition ``window``, RowKey = the escaped instance id;
- one entity in partition ``health``, rewritten by each readiness check.

Values that Tables cannot hold as columns (the slot windows) are JSON text.
"""

from __future__ import annotations

import json
from typing import Any

from azure.data.tables import TableEntity

from shared.domain.ratelimit import ClientState, PeerWindow, SlotWindow, TokenBucket
from shared.ports import RateLimitStoreError

__all__ = [
    "CLIENT_PREFIX",
    "CLIENT_PREFIX_END",
    "HEALTH_PARTITION",
    "HEALTH_ROW",
    "STATE_ROW",
    "WINDOW_PARTITION",
    "client_entity",
    "client_partition",
    "client_state",
    "escape_key",
    "peer_window",
    "window_entity",
]

STATE_ROW = "state"
CLIENT_PREFIX = "client:"
CLIENT_PREFIX_END = "client;"
"""The first string after every `client:...` partition key (`;` follows `:`)."""
WINDOW_PARTITION = "window"
HEALTH_PARTITION = "health"
HEALTH_ROW = "probe"
_FORBIDDEN_KEY_CHARS = frozenset("/\\#?%")
"""Table keys forbid / \\ # ?; % is escaped too so that escaping stays reversible (no collisions)."""


def escape_key(value: str) -> str:
    """Make `value` a valid PartitionKey/RowKey: forbidden and control characters become %XX."""
    return "".join(f"%{ord(char):02X}" if char in _FORBIDDEN_KEY_CHARS or _is_control(char) else char for char in value)


def _is_control(char: str) -> bool:
    code = ord(char)
    return code <= 0x1F or 0x7F <= code <= 0x9F


def client_partition(client_key: str) -> str:
    """The partition of one client's entity."""
    return CLIENT_PREFIX + escape_key(client_key)


def client_entity(partition: str, state: ClientState) -> dict[str, Any]:
    """The entity that stores `state` in `partition`."""
    return {
        "PartitionKey": partition,
        "RowKey": STATE_ROW,
        "tokens": float(state.bucket.tokens),
        "updatedAt": float(state.bucket.updated_at),
        "recent": json.dumps(state.recent.to_list()),
    }


def window_entity(instance_id: str, window: SlotWindow, now: float, reserved: int) -> dict[str, Any]:
    """The entity that stores one instance's window and reservation, exchanged at `now`."""
    return {
        "PartitionKey": WINDOW_PARTITION,
        "RowKey": escape_key(instance_id),
        "instanceId": instance_id,
        "window": json.dumps(window.to_list()),
        "exchangedAt": float(now),
        "reserved": int(reserved),
    }


def client_state(entity: TableEntity) -> ClientState:
    """The client state an entity holds; `RateLimitStoreError` if it is malformed."""
    try:
        return ClientState(
            bucket=TokenBucket(tokens=float(entity["tokens"]), updated_at=float(entity["updatedAt"])),
            recent=SlotWindow.from_list(json.loads(entity["recent"])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RateLimitStoreError(f"malformed client entity {entity.get('PartitionKey')!r}") from exc


def peer_window(entity: TableEntity) -> PeerWindow:
    """The instance window an entity holds; `RateLimitStoreError` if it is malformed."""
    try:
        return PeerWindow(
            instance_id=str(entity["instanceId"]),
            window=SlotWindow.from_list(json.loads(entity["window"])),
            exchanged_at=float(entity["exchangedAt"]),
            reserved=int(entity.get("reserved", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RateLimitStoreError(f"malformed instance window entity {entity.get('RowKey')!r}") from exc
