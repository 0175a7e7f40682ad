"""`docs/privacy.md` against the code it describes: the key an operator must keep for tombstones.

An operator who keeps the wrong secret (or rotates the right one) makes every tombstone
unrecognisable, and erased subjects' events are accepted again: the doc must name the key the
stages hash under (`Container.subject_key_secret`), not the client-key secret.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "privacy.md"


def test_the_doc_names_the_subject_key_as_the_key_of_subject_hashes() -> None:
    doc = DOC.read_text(encoding="utf-8")

    assert "CLOUDSCALE_SUBJECT_KEY_SECRET" in doc
    # The client-key secret is new with every deployment (infra/modules/functionapp.bicep):
    # the doc must not present it as the key of subject hashes, nor ask to keep it for them.
    assert "CLOUDSCALE_CLIENT_KEY_SECRET" not in doc
