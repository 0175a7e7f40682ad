"""Drive a real Segment-API SDK against a host: run by `.venv-sdk`'s Python, not the test's.

The SDKs cannot share the development venv (see requirements.in beside this file), so
`tests/e2e/test_segment_api.py` runs this script in a subprocess. It reads one JSON plan on
stdin and writes one JSON result on stdout:

    plan:   {"sdk": "segment" | "rudder", "host": "http://127.0.0.1:PORT/api", "write_key": "...",
             "options": {client options, e.g. "gzip": true, "sync_mode": true},
             "calls": [{"call": "track", "args": {keyword arguments}}, ...]}
    result: {"errors": ["what the SDK reported", ...], "returned": [what each call returned]}

Errors are what the SDK itself reports: its `on_error` callback, or an exception a call
raised in sync mode. Standard library and the SDK only: this venv holds nothing else.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def client_class(sdk: str) -> Any:
    if sdk == "segment":
        from segment.analytics.client import Client
    elif sdk == "rudder":
        from rudderstack.analytics.client import Client
    else:
        raise SystemExit(f"unknown sdk {sdk!r}")
    return Client


def main() -> None:
    plan = json.load(sys.stdin)
    errors: list[str] = []

    def on_error(error: Exception, batch: Any) -> None:
        errors.append(f"{type(error).__name__}: {error}")

    client = client_class(plan["sdk"])(plan["write_key"], host=plan["host"], on_error=on_error, **plan["options"])
    returned: list[Any] = []
    for step in plan["calls"]:
        try:
            result = getattr(client, step["call"])(**step["args"])
        except Exception as error:  # the SDK's own report of a refused request (sync mode)
            errors.append(f"{type(error).__name__}: {error}")
            result = None
        # Each call returns (success, message); the message has the messageId the SDK made.
        returned.append(result[1] if isinstance(result, tuple) else None)
    client.flush()
    if not plan["options"].get("sync_mode"):
        # In sync mode there are no consumer threads, and shutdown() fails on their absence.
        client.shutdown()
    json.dump({"errors": errors, "returned": returned}, sys.stdout, default=str)


if __name__ == "__main__":
    main()
