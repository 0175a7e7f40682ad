"""Who may read a stored event back: a server key of the event's tenant.

`GET /api/events/{tenantId}/{eventId}` is an anonymous route to the Functions host; the app
checks the caller itself, with the same write keys producers send (`shared.write_key_auth`):

- keys required: a server key of that tenant (401 without a key or with an unknown one, 403
  for a browser key, which is public and may only write, and for a revoked key or a
  suspended tenant);
- another tenant's key: the answer of an event that is not stored (404), so a key never
  learns whether another tenant has an event;
- open mode (embedded, keys optional): no key, no check, as before; a key sent is checked.

Operators read any tenant's event with `cloudscale events get TENANT EVENT_ID`, which reads
the store with the operator's own credentials, not through this route.

No HTTP here: the blueprint maps a `ReadRefusedError` to its status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from shared.authorization_header import key_from_authorization
from shared.ports import PortError
from shared.write_key_auth import KeyRejectedError, Producer

__all__ = ["ReadAccess", "ReadRefusedError"]

Outcome = Literal["allowed", "not_found"]


class ReadRefusedError(Exception):
    """The caller may not read: `status` 401, 403 or 503 (registry down), `code` and `message` for the body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ReadAccess:
    """Decides whether a request may read one tenant's events."""

    def __init__(self, authenticate: Callable[[str], Awaitable[Producer]], *, keys_required: bool) -> None:
        self._authenticate = authenticate
        self._keys_required = keys_required

    async def check(self, authorization: str | None, tenant_id: str) -> Outcome:
        """`allowed`, or `not_found` for another tenant's key (answer as if not stored); else `ReadRefusedError`."""
        if not authorization or not authorization.strip():
            if self._keys_required:
                raise ReadRefusedError(
                    401, "missing_key", "reading an event needs a server key: send 'Authorization: Bearer <key>'"
                )
            return "allowed"
        try:
            producer = await self._authenticate(key_from_authorization(authorization))
        except KeyRejectedError as rejected:
            raise ReadRefusedError(rejected.status, rejected.reason, rejected.message) from None
        except PortError as exc:
            raise ReadRefusedError(
                503, "registry_unavailable", "the tenant registry is temporarily unavailable; retry later"
            ) from exc
        if producer.kind != "server":
            raise ReadRefusedError(
                403, "server_key_required", "browser keys can only send events; read with a server key"
            )
        return "allowed" if producer.tenant_id == tenant_id else "not_found"
