"""Errors of the ingest use case: why a request fails as a whole, each with a stable code.

No HTTP here: `ingest.http` maps each error to its status and headers.

Error tree::

    IngestError                      (code, message, details)
    ├── UnsupportedMediaTypeError    unsupported_media_type
    ├── PayloadTooLargeError         payload_too_large
    ├── MalformedJsonError           malformed_json
    ├── InvalidEventsError           invalid_events          every event was rejected
    ├── UnauthorizedError            missing_key|invalid_key  no usable write key (401)
    ├── ForbiddenError               key_revoked|tenant_suspended|origin_not_allowed (403)
    ├── RateLimitedError             rate_limited            with the refusing decision
    └── UnavailableError             <code>                  a dependency is down; retry later
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from ingest.rate_limiter import RateLimitDecision

__all__ = [
    "AuthScheme",
    "ForbiddenError",
    "IngestError",
    "InvalidEventsError",
    "MalformedJsonError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "UnauthorizedError",
    "UnavailableError",
    "UnsupportedMediaTypeError",
]

AuthScheme = Literal["Bearer", "Basic"]
"""An HTTP authentication scheme a caller may answer a 401 with (`WWW-Authenticate`)."""


class IngestError(Exception):
    """A request that fails as a whole; `code` and `details` are what the caller is told."""

    default_code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = list(details)


class UnsupportedMediaTypeError(IngestError):
    default_code = "unsupported_media_type"


class PayloadTooLargeError(IngestError):
    default_code = "payload_too_large"


class MalformedJsonError(IngestError):
    default_code = "malformed_json"


class InvalidEventsError(IngestError):
    """Every event of the request was rejected; the request still counted against the limits."""

    default_code = "invalid_events"

    def __init__(self, message: str, *, details: Sequence[Mapping[str, Any]], rate_limit: RateLimitDecision) -> None:
        super().__init__(message, details=details)
        self.rate_limit = rate_limit
        """The limits' decision for this request (it was admitted)."""


class UnauthorizedError(IngestError):
    """No usable write key: none was sent (`missing_key`), or it is not one we know (`invalid_key`).

    `schemes` are the challenges the answer's `WWW-Authenticate` names, in order: `Bearer`
    on our own API, `Basic` too where Segment's SDKs send the key as a user name.
    """

    default_code = "missing_key"

    def __init__(
        self, message: str, *, code: str = "missing_key", schemes: tuple[AuthScheme, ...] = ("Bearer",)
    ) -> None:
        super().__init__(message, code=code)
        self.schemes = schemes


class ForbiddenError(IngestError):
    """A known key that may not do this: `key_revoked`, `tenant_suspended`, `origin_not_allowed`."""

    default_code = "forbidden"

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, code=code)


class RateLimitedError(IngestError):
    default_code = "rate_limited"

    def __init__(self, message: str, *, decision: RateLimitDecision) -> None:
        limit = decision.refused_by or "ip"
        super().__init__(message, details=[{"limit": limit}])
        self.decision = decision
        self.limit = limit
        """Which limit refused the request: `ip`, `global` or `tenant`."""


class UnavailableError(IngestError):
    """A dependency is down: nothing was accepted, and the caller may retry after `retry_after_seconds`."""

    default_code = "service_unavailable"

    def __init__(self, message: str, *, code: str, retry_after_seconds: int) -> None:
        super().__init__(message, code=code)
        self.retry_after_seconds = retry_after_seconds
