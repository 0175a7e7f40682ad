"""The OpenAPI document against what the endpoints take (found in review)."""

from __future__ import annotations

from ingest.openapi import openapi_document


def test_post_events_documents_the_text_plain_body_a_beacon_sends() -> None:
    """`POST /api/events` accepts `text/plain` JSON (README, "Browsers"); the document lists only JSON."""
    content = openapi_document()["paths"]["/api/events"]["post"]["requestBody"]["content"]
    assert "text/plain" in content, sorted(content)


def test_the_segment_api_documents_the_write_key_in_the_url() -> None:
    """`/api/v1/*` reads `?writeKey=` (a browser key) like `POST /api/events`; its security omits it."""
    for path in ("/api/v1/batch", "/api/v1/{call}"):
        security = openapi_document()["paths"][path]["post"]["security"]
        assert {"writeKeyQuery": []} in security, (path, security)


def test_the_segment_api_documents_the_form_media_type_it_takes() -> None:
    """rudder-sdk-node's `application/x-www-form-urlencoded` is accepted (README); the document omits it."""
    content = openapi_document()["paths"]["/api/v1/batch"]["post"]["requestBody"]["content"]
    assert "application/x-www-form-urlencoded" in content, sorted(content)
