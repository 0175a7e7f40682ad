"""JSON responses for every stage's HTTP functions (one error shape across the API)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import azure.functions as func
import orjson

__all__ = ["error_response", "json_response"]


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        orjson.dumps(body), status_code=status, headers=dict(headers or {}), mimetype="application/json"
    )


def error_response(
    status: int, error: str, message: str, *, details: list[Any] | None = None, retry_after: int | None = None
) -> func.HttpResponse:
    """The API's error shape: `{error, message, details}`, with `Retry-After` when given."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return json_response(status, {"error": error, "message": message, "details": details or []}, headers)
