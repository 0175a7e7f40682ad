"""One instance runs a timer function at a time: a file lock per timer in the data folder.

The Functions host runs a timer-triggered function on a single instance however far the app
scales out: its listener holds a singleton lock (a blob lease in the app's storage) and the
other instances keep trying to take it, so a lost instance's timer moves to a survivor
(sources in `docs/architecture.md`). Locally the lock is an exclusive `flock` on
`timers/locks/<timer>.lock`: the kernel releases it when its holder dies, however it dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from pathlib import Path

__all__ = ["TimerLock"]

_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


class TimerLock:
    """The singleton lock of one timer function, shared by every host process on a data folder."""

    def __init__(self, folder: Path, timer: str) -> None:
        self.path = folder / f"{_SAFE_NAME.sub('_', timer)}.lock"
        self._descriptor: int | None = None

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def try_acquire(self) -> bool:
        """Take the lock if no other process holds it; True if this process holds it now."""
        if self._descriptor is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return False
        except BaseException:
            # Any other failure (no locks on this file system, say) is retried every second:
            # the descriptor must not outlive the attempt.
            os.close(descriptor)
            raise
        self._descriptor = descriptor
        return True

    def release(self) -> None:
        """Give the lock up (closing the file releases it)."""
        if self._descriptor is not None:
            with contextlib.suppress(OSError):
                os.close(self._descriptor)
            self._descriptor = None
