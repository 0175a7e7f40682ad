"""How callers of the API authenticate, as the OpenAPI document states it (`ingest.openapi`).

Write keys (`docs/tradeoffs.md`, "Write keys"): in the `Authorization` header as a bearer
token or as the Basic user name (Segment's convention), and browser keys also in the URL.
"""

from __future__ import annotations

__all__ = ["SECURITY_SCHEMES", "WRITE_KEY_OR_QUERY_SECURITY", "WRITE_KEY_SECURITY", "WWW_AUTHENTICATE"]

WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "schema": {"type": "string"},
        "description": 'The challenge: `Bearer realm="cloudscale"`.',
    }
}

WRITE_KEY_SECURITY: list[dict[str, list[str]]] = [{"writeKeyBearer": []}, {"writeKeyBasic": []}]
"""A write key in the `Authorization` header, as a bearer token or as the Basic user name."""

WRITE_KEY_OR_QUERY_SECURITY: list[dict[str, list[str]]] = [*WRITE_KEY_SECURITY, {"writeKeyQuery": []}]
"""The same, or a browser key in `?writeKey=`: the endpoints producers send events to."""

SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "writeKeyBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "A write key of the tenant: `Authorization: Bearer cs_sk_…` (server key) or `cs_bk_…` (browser "
            "key, only from the origins it is bound to). Required on Azure; with the embedded backend's open "
            "mode (`CLOUDSCALE_WRITE_KEYS=optional`) a request without a key is taken for the tenant its body "
            "names, and a key that is sent is always checked."
        ),
    },
    "writeKeyBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "The write key as the user name and an empty password (Segment's convention).",
    },
    "writeKeyQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "writeKey",
        "description": (
            "A browser key in the URL, for clients that cannot set headers (beacons). Server keys are refused "
            "here: a URL ends up in logs."
        ),
    },
    "functionKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-functions-key",
        "description": "A function key, on Azure only (the `code` query parameter works too).",
    },
}
