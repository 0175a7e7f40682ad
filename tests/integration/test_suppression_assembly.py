"""The composition root hands every stage that stores or sends events the suppression list."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson

from process.service import DeliveredMessage, ProcessOutcome
from shared.assembly import build_analytics_feed, build_analytics_reconciler, build_event_processor
from shared.bootstrap import Container
from shared.domain.privacy import Suppression, subject_hash
from shared.settings import load_settings
from tests.integration.test_reconcile import stored_event
from tests.integration.test_suppression_stages import CLIENT, ERASED_AT

SECRET = "a-deployment-secret-of-enough-length"
EVENT_ID = "00000000-0000-0000-0000-000000000001"


async def test_the_assembled_stages_drop_an_erased_users_events(tmp_path: Path) -> None:
    container = Container(
        load_settings(
            {
                "CLOUDSCALE_BACKEND": "embedded",
                "CLOUDSCALE_DATA_DIR": str(tmp_path),
                "CLOUDSCALE_SUBJECT_KEY_SECRET": SECRET,
            }
        )
    )
    try:
        hashed = subject_hash(SECRET.encode(), "acme", "userId", "u-erased")
        await container.privacy_store.save_suppression(Suppression("acme", hashed, "userId", ERASED_AT))
        body = {
            "schemaVersion": 2,
            "event": {"eventType": "page_view", "tenantId": "acme", "eventId": EVENT_ID, "userId": "u-erased"},
            "receivedAt": datetime.now(UTC).isoformat(),
            "clientNetwork": CLIENT.network,
            "clientKey": CLIENT.key,
            "ipRequestsLastMinute": 1,
        }

        outcome = await build_event_processor(container).handle(DeliveredMessage(orjson.dumps(body), "m-1"))

        assert outcome is ProcessOutcome.SUPPRESSED
        assert await container.event_store.get("acme", EVENT_ID) is None

        # An event of the user stored all the same (a delivery in flight): the feed drops and deletes it.
        late = stored_event(7, received_at=ERASED_AT).model_copy(update={"user_id": "u-erased"})
        assert await container.event_store.save(late)
        feed = await build_analytics_feed(container).handle([{**late.to_document(), "_ts": ERASED_AT.timestamp()}])
        assert (feed.written, feed.suppressed) == (0, 1)
        assert await container.event_store.get("acme", late.event_id) is None
        build_analytics_reconciler(container)  # builds with the list (mypy checks the wiring's types)
    finally:
        await container.close()
