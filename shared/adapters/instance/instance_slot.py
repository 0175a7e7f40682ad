"""Which host process came before this one on a machine: a numbered slot held with a file lock.

The global rate-limit window is shared by instances through their records in the rate-limit
store, each under its instance id, with what it admitted and the allowance it claimed. A host
that was killed leaves its record behind until the others stop counting it; a host started
again at once would count its own predecessor's claim against itself and refuse requests
well under the limit. What its predecessor admitted still counts (those requests were let
in), but its claim is void: it will admit nothing more. So a host process takes the lowest
free slot in the data folder (`instances/slot-<n>.lock`, held with an exclusive `flock` for
as long as the process lives: the kernel releases it when the process dies, however it dies),
reads the id its predecessor in that slot wrote there, and writes its own fresh id. Several
hosts on one data folder get different slots.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from pathlib import Path

__all__ = ["InstanceSlot"]

MAX_SLOTS = 1024


class InstanceSlot:
    """The lowest free slot under `folder`, held until `release` (or the process's end)."""

    def __init__(self, folder: Path) -> None:
        """Take a slot; raises `OSError` when the folder cannot be used or every slot is taken."""
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(MAX_SLOTS):
            descriptor = os.open(folder / f"slot-{number}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                continue
            self.number = number
            self._descriptor: int | None = descriptor
            self.predecessor_id = os.read(descriptor, 256).decode("ascii", "replace").strip() or None
            self.instance_id = f"local-{number}-{secrets.token_hex(6)}"
            os.lseek(descriptor, 0, os.SEEK_SET)
            os.ftruncate(descriptor, 0)
            os.write(descriptor, self.instance_id.encode("ascii"))
            return
        raise OSError(f"all {MAX_SLOTS} instance slots in {folder} are taken")

    def release(self) -> None:
        """Give the slot up (closing the file releases the lock)."""
        if self._descriptor is not None:
            with contextlib.suppress(OSError):
                os.close(self._descriptor)
            self._descriptor = None
