"""The identifier of a running erasure, encrypted at rest so a restarted runner can finish it.

An erasure record keeps a keyed hash of the subject for good (`shared.domain.privacy`); to
delete the subject's events the runner also needs the identifier itself, and a runner that
restarts after a crash has nothing else to read it from. So while the erasure runs its record
holds the identifier sealed with AES-256-GCM under a key derived from the deployment's secret
(the same one subject hashes are made under), bound to the erasure's id, and the runner
removes it when the erasure finishes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["SealError", "seal_subject", "unseal_subject"]

_KEY_CONTEXT: Final = b"cloudscale-erasure-seal-v1"
_NONCE_BYTES: Final = 12


class SealError(ValueError):
    """The sealed identifier cannot be opened: another secret, another erasure, or damaged."""


def _key(secret: bytes) -> bytes:
    return hmac.new(secret, _KEY_CONTEXT, hashlib.sha256).digest()


def seal_subject(secret: bytes, erasure_id: str, value: str) -> str:
    """`value` encrypted for the erasure `erasure_id` (URL-safe base64 of nonce and ciphertext)."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(_key(secret)).encrypt(nonce, value.encode(), erasure_id.encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal_subject(secret: bytes, erasure_id: str, sealed: str) -> str:
    """The identifier `seal_subject` sealed for this erasure; `SealError` if it cannot be opened."""
    try:
        raw = base64.urlsafe_b64decode(sealed.encode())
        plain = AESGCM(_key(secret)).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], erasure_id.encode())
    except (InvalidTag, ValueError) as exc:
        raise SealError(f"the identifier of erasure {erasure_id} cannot be opened under this secret") from exc
    return plain.decode()
