"""What stops an erasure other than a store failure (those are `shared.ports.PortError`).

ErasureError
├── ErasureNotFoundError    no erasure has this id
├── ErasureBusyError        another runner holds it (or took it over)
└── ErasureUnreadableError  its identifier cannot be opened under this secret
"""

from __future__ import annotations

__all__ = ["ErasureBusyError", "ErasureError", "ErasureNotFoundError", "ErasureUnreadableError"]


class ErasureError(Exception):
    """An erasure cannot go on from here (not a dependency failure: those are `PortError`)."""


class ErasureNotFoundError(ErasureError):
    """No erasure has this id."""


class ErasureBusyError(ErasureError):
    """Another runner holds the erasure's lease (or took it over while this one ran): it finishes it."""


class ErasureUnreadableError(ErasureError):
    """The unfinished erasure's identifier cannot be opened (another deployment secret, or damaged)."""
