"""Translation between the ingest use case and `azure.functions` HTTP types."""

from __future__ import annotations

import azure.functions as func

from ingest.client_ip import client_ip
from ingest.errors import IngestError
from ingest.service import IngestOutcome, IngestRequest, rate_limit_headers
from shared.http import json_response
from shared.settings import Settings

__all__ = ["accepted_response", "error_response", "ingest_request", "json_response"]


def ingest_request(req: func.HttpRequest, settings: Settings) -> IngestRequest:
    """What the use case needs from the request.

    Not the `traceparent` header: the host's request activity continues it already, and the
    function runs under that activity (`shared.telemetry.invocation_span`). Reading it here
    again would make the app's spans siblings of the host's request instead of its children.
    """
    headers = req.headers
    return IngestRequest(
        body=req.get_body(),
        content_type=headers.get("content-type"),
        client_ip=client_ip(headers.get("x-forwarded-for"), settings.trusted_proxies),
        user_agent=headers.get("user-agent"),
    )


def accepted_response(outcome: IngestOutcome) -> func.HttpResponse:
    body = {
        "accepted": outcome.accepted,
        "rejected": outcome.rejected,
        "results": [result.to_dict() for result in outcome.results],
    }
    return json_response(202, body, rate_limit_headers(outcome.rate_limit))


def error_response(error: IngestError) -> func.HttpResponse:
    body = {"error": error.code, "message": error.message, "details": error.details}
    return json_response(error.status, body, error.headers)
