"""Where a request's write key comes from, and what a refused key turns into.

A producer sends its key in one of three places (see `docs/tradeoffs.md`):

- the `Authorization` header, as `Bearer <key>` or as HTTP Basic with the key as the user
  name and an empty password (`Basic base64("<key>:")`, Segment's convention; the colon
  may be missing, as older Segment clients send it);
- the URL query, `?writeKey=<key>`, for browsers that cannot set headers (beacons);
- the body (`writeKey` on the Segment API), read by that API's body reader.

Browser keys are public, so the URL and the body are fine for them. A server key is a secret:
in a URL it ends up in proxy and server logs, so it is refused there always, even beside the
header. In the body it is refused unless the header presents it too: Segment's Python and Node
SDKs send their key in both, and a body is not logged as a URL is.

Nothing here logs or echoes a key: messages name at most where it was found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ingest.errors import AuthScheme, ForbiddenError, UnauthorizedError
from shared.authorization_header import key_from_authorization
from shared.domain.write_keys import parse_key
from shared.write_key_auth import KeyRejectedError

__all__ = ["KeySource", "PresentedKey", "body_key", "presented_key", "rejection_error"]

KeySource = Literal["header", "url", "body"]

_SERVER_KEY_OUTSIDE_HEADER = (
    "server keys go in the Authorization header only; a key in a URL ends up in logs "
    "(send 'Authorization: Bearer <key>', or use a browser key here)"
)


@dataclass(frozen=True, slots=True)
class PresentedKey:
    """A key as a request presented it: the string (unchecked) and where it was found."""

    key: str
    source: KeySource

    def __repr__(self) -> str:
        # A key never reaches a log through a repr: only where it came from and its id, if shaped like one.
        parsed = parse_key(self.key)
        return f"PresentedKey(key_id={parsed.key_id if parsed else None!r}, source={self.source!r})"


def presented_key(
    authorization: str | None,
    query_write_key: str | None,
    *,
    schemes: tuple[AuthScheme, ...] = ("Bearer",),
) -> PresentedKey | None:
    """The key the request presents in its `Authorization` header or `?writeKey=`, or None for neither.

    Raises `UnauthorizedError` (`invalid_key`, challenging with `schemes`) for a header that
    is not `Bearer <key>` or `Basic base64(<key>:)`, for a Basic password that is not empty,
    for two different keys, and for a server key in the URL.
    """
    # An empty header is no header (the Functions host drops empty-valued headers, cors-facts §4).
    from_header = _header_key(authorization, schemes) if authorization and authorization.strip() else None
    from_url = PresentedKey(query_write_key, "url") if query_write_key else None
    if from_url is not None:
        # Even when the header repeats it: the URL is in every proxy's log all the same.
        _refuse_server_key_outside_header(from_url, schemes)
    if from_header is not None and from_url is not None and from_header.key != from_url.key:
        raise UnauthorizedError(
            "the request presents two different write keys (Authorization and ?writeKey=); send one",
            code="invalid_key",
            schemes=schemes,
        )
    return from_header or from_url


def body_key(write_key: str, *, schemes: tuple[AuthScheme, ...] = ("Bearer",)) -> PresentedKey:
    """A key found in the request body (Segment's `writeKey`): browser keys only."""
    presented = PresentedKey(write_key, "body")
    _refuse_server_key_outside_header(presented, schemes)
    return presented


def rejection_error(
    rejected: KeyRejectedError, *, schemes: tuple[AuthScheme, ...] = ("Bearer",)
) -> UnauthorizedError | ForbiddenError:
    """The ingest error for a key the authenticator refused: 401 for no or an unknown key, 403 otherwise."""
    if rejected.status == 401:
        return UnauthorizedError(rejected.message, code=rejected.reason, schemes=schemes)
    return ForbiddenError(rejected.message, code=rejected.reason)


def _header_key(authorization: str, schemes: tuple[AuthScheme, ...]) -> PresentedKey:
    try:
        return PresentedKey(key_from_authorization(authorization), "header")
    except KeyRejectedError as rejected:
        raise rejection_error(rejected, schemes=schemes) from None


def _refuse_server_key_outside_header(presented: PresentedKey, schemes: tuple[AuthScheme, ...]) -> None:
    if presented.source == "header":
        return
    parsed = parse_key(presented.key)
    if parsed is not None and parsed.kind == "server":
        raise UnauthorizedError(_SERVER_KEY_OUTSIDE_HEADER, code="invalid_key", schemes=schemes)
