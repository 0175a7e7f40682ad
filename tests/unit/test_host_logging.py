"""The host's log lines as a person reads them at the terminal."""

from __future__ import annotations

import io
import logging

from cloudscale_local.host.host_logging import configure_logging


def test_a_terminal_escape_in_a_message_is_shown_as_text_and_a_traceback_keeps_its_lines() -> None:
    stream = io.StringIO()
    handler = configure_logging("info", stream=stream)
    try:
        logger = logging.getLogger("cloudscale.test")
        logger.warning("refused %s", "/api/events/\x1b]0;owned\x07")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
        handler.flush()
    finally:
        handler.close()
        logging.getLogger().removeHandler(handler)
    written = stream.getvalue()
    assert "\x1b" not in written
    assert "\x07" not in written
    assert "/api/events/\\x1b]0;owned\\x07" in written
    assert "Traceback (most recent call last):\n" in written
