"""Distinct users per client: the one fraud signal that needs memory across events.

Time is passed in, never read; the state is per process and bounded (see `DistinctUsersTracker`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["DistinctUsersTracker"]


class DistinctUsersTracker:
    """Distinct user ids per client over a sliding window, in bounded memory.

    `observe` records one event and answers how many distinct user ids the client sent in the
    last `window_seconds` (this event's included; events without a user id add none). Time is
    passed in, never read.

    Memory is bounded twice: at most `max_clients` clients (the least recently seen is
    forgotten first) and, per client, at most `max_users_per_client` ids (the most recently
    seen are kept). A count therefore saturates at `max_users_per_client`: size it a few
    above the rule's limit, enough to decide. Ids are kept as their (per-process salted)
    `hash`, not as text; a collision could only under-count.

    `client_key` should be the client's keyed hash (`shared.domain.client_identity.ClientIdentity.key`,
    carried in the envelope as `client_key`), never the raw IP.

    Scope: the state lives in one process. On Azure each instance of the process stage sees
    only its share of the messages, so a client's users are split across instances and the
    count is an under-count: it errs towards not flagging. Locally (one process) it is exact.
    """

    def __init__(self, window_seconds: float, max_users_per_client: int, max_clients: int = 10_000) -> None:
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds}")
        if max_users_per_client < 1 or max_clients < 1:
            raise ValueError("max_users_per_client and max_clients must be at least 1")
        self.window_seconds = window_seconds
        self.max_users_per_client = max_users_per_client
        self.max_clients = max_clients
        # client -> {hash(user id): last seen}; both least recently seen first.
        self._clients: OrderedDict[str, dict[int, float]] = OrderedDict()
        # The process stage may call from several worker threads.
        self._lock = threading.Lock()

    def observe(self, client_key: str, user_id: str | None, now: float) -> int:
        """Record an event from `client_key` at `now`; return its distinct users in the window."""
        with self._lock:
            users = self._clients.get(client_key)
            if users is None:
                if user_id is None:
                    return 0  # nothing to remember: don't spend a client slot on it
                users = self._clients[client_key] = {}
                if len(self._clients) > self.max_clients:
                    self._clients.popitem(last=False)
            else:
                self._clients.move_to_end(client_key)
            self._expire(users, now)
            if user_id is not None:
                self._remember(users, hash(user_id), now)
            return len(users)

    def __len__(self) -> int:
        """How many clients are remembered (at most `max_clients`)."""
        return len(self._clients)

    def _expire(self, users: dict[int, float], now: float) -> None:
        horizon = now - self.window_seconds
        while users:
            oldest = next(iter(users))
            if users[oldest] > horizon:
                break
            del users[oldest]

    def _remember(self, users: dict[int, float], user: int, now: float) -> None:
        # Re-inserting moves the id to the end, keeping the dict ordered by last seen.
        users.pop(user, None)
        users[user] = now
        if len(users) > self.max_users_per_client:
            del users[next(iter(users))]
