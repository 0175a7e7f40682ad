"""The write key in an `Authorization` header: `Bearer <key>`, or HTTP Basic with the key as user name.

Basic is Segment's convention: `Basic base64("<key>:")`, the key as the user name and an
empty password; the colon may be missing (older Segment clients leave it out, and Segment
accepts that). A password is refused: it is not part of a write key, so a client that sends
one has mixed up its settings, and ignoring it would hide that.

Shared by every stage that takes a key (ingest, reading an event back). Plain parsing, no I/O;
what is wrong is reported as `KeyRejectedError("invalid_key", ...)`, whose message never
contains the header's value.
"""

from __future__ import annotations

import base64
import binascii

from shared.write_key_auth import KeyRejectedError

__all__ = ["key_from_authorization"]


def key_from_authorization(authorization: str) -> str:
    """The key an `Authorization` header carries; `KeyRejectedError` (`invalid_key`) when it is malformed."""
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        return credentials
    if scheme.lower() == "basic" and credentials:
        return _basic_user(credentials)
    raise KeyRejectedError(
        "invalid_key",
        "the Authorization header must be 'Bearer <key>' or 'Basic base64(<key>:)' (the key as user name, "
        "an empty password)",
    )


def _basic_user(credentials: str) -> str:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise KeyRejectedError("invalid_key", "the Basic credentials are not base64 of '<key>:'") from None
    user, _, password = decoded.partition(":")
    if password:
        raise KeyRejectedError(
            "invalid_key",
            "HTTP Basic takes the write key as the user name and an empty password; this request has a password",
        )
    if not user:
        raise KeyRejectedError(
            "invalid_key", "the Basic credentials have no user name; send the write key as the user name"
        )
    return user
