"""Errors of the ingest API, each mapped to an HTTP status and a stable error code.

Error tree::

    IngestError                      (status, code, message, details, headers)
    ├── UnsupportedMediaTypeError    415 unsupported_media_type
    ├── PayloadTooLargeError         413 payload_too_large
    ├── MalformedJsonError           400 malformed_json
    ├── InvalidEventsError           400 invalid_events     every event was rejected
    ├── RateLimitedError             429 rate_limited
    └── UnavailableError             503 <code>             a dependency is down; retry later
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

__all__ = [
    "IngestError",
    "InvalidEventsError",
    "MalformedJsonError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "UnavailableError",
    "UnsupportedMediaTypeError",
]


class IngestError(Exception):
    """A request the API answers with an error status and a JSON error body."""

    status: ClassVar[int] = 400
    default_code: ClassVar[str] = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Sequence[Mapping[str, Any]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = list(details)
        self.headers = dict(headers or {})


class UnsupportedMediaTypeError(IngestError):
    status = 415
    default_code = "unsupported_media_type"


class PayloadTooLargeError(IngestError):
    status = 413
    default_code = "payload_too_large"


class MalformedJsonError(IngestError):
    status = 400
    default_code = "malformed_json"


class InvalidEventsError(IngestError):
    status = 400
    default_code = "invalid_events"


class RateLimitedError(IngestError):
    status = 429
    default_code = "rate_limited"

    def __init__(self, message: str, *, limit: str, headers: Mapping[str, str]) -> None:
        super().__init__(message, details=[{"limit": limit}], headers=headers)
        self.limit = limit
        """Which limit refused the request: `ip` or `global`."""


class UnavailableError(IngestError):
    status = 503
    default_code = "service_unavailable"
