"""Browser-key origins as operators type them and as browsers send them (found in review)."""

from __future__ import annotations

from shared.domain.write_keys import normalise_origin, origin_allowed


def test_an_internationalised_origin_matches_what_browsers_send_or_is_refused_at_creation() -> None:
    """Browsers send an IDN host in its ASCII (punycode) form in `Origin`: `https://xn--bcher-kva.example`."""
    try:
        stored = normalise_origin("https://bücher.example")
    except ValueError:
        return  # refused when the key is made: the operator learns to give the ASCII form
    assert origin_allowed("browser", (stored,), "https://xn--bcher-kva.example"), stored
