"""`cloudscale live show|reset` through the real CLI against a real live-events file.

(`cloudscale tail` following a running host: tests/e2e/test_live_events.py.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from cloudscale_local.cli.main import main
from shared.adapters.live_events.embedded import LIVE_EVENTS_FILE, EmbeddedLiveEvents
from shared.domain.live_events import LiveEvent, LiveEventReason
from tests.integration.test_live_events_store import accepted, rejected


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    async def fill() -> None:
        log = EmbeddedLiveEvents(tmp_path / LIVE_EVENTS_FILE, 100)
        log.record([accepted(1), rejected(2), accepted(3, tenant="globex")])
        await log.close()

    asyncio.run(fill())
    return tmp_path


def cli(data_dir: Path, *args: str, color: bool = False) -> Result:
    return CliRunner().invoke(main, list(args), env={"CLOUDSCALE_DATA_DIR": str(data_dir)}, color=color)


def test_show_prints_the_kept_events_oldest_first_one_plain_line_each(data_dir: Path) -> None:
    shown = cli(data_dir, "live", "show")
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert [line.split()[1:6] for line in lines] == [
        ["accepted", "events", "202", "acme", "page_view"],
        ["rejected", "events", "202", "acme", "click"],
        ["accepted", "events", "202", "globex", "page_view"],
    ]
    assert lines[1].endswith("eventType: missing Field required")
    assert "\x1b[" not in shown.stdout


def test_show_colours_the_outcome_at_a_terminal(data_dir: Path) -> None:
    shown = cli(data_dir, "live", "show", "--limit", "1", color=True)
    assert "\x1b[32m\x1b[1maccepted" in shown.stdout


def test_show_filters_and_prints_json_lines(data_dir: Path) -> None:
    shown = cli(data_dir, "live", "show", "--rejected", "--json")
    [event] = [orjson.loads(line) for line in shown.stdout.splitlines()]
    assert (event["seq"], event["outcome"], event["reasons"][0]["code"]) == (2, "rejected", "missing")
    by_tenant = cli(data_dir, "live", "show", "--tenant", "globex", "--json").stdout.splitlines()
    assert [orjson.loads(line)["tenantId"] for line in by_tenant] == ["globex"]


def test_reset_says_how_many_were_forgotten(data_dir: Path) -> None:
    assert cli(data_dir, "live", "reset").stdout == "forgot 3 kept events\n"
    assert cli(data_dir, "live", "reset").stdout == "forgot 0 kept events\n"
    assert cli(data_dir, "live", "show", "--json").stdout == ""


def test_without_a_file_show_says_to_start_the_host_and_reset_creates_nothing(tmp_path: Path) -> None:
    shown = cli(tmp_path, "live", "show")
    assert shown.exit_code == 1
    assert "start `cloudscale run`" in shown.output
    assert cli(tmp_path, "live", "reset").exit_code == 0
    assert not (tmp_path / LIVE_EVENTS_FILE).exists()


def test_on_azure_the_commands_say_where_to_look_instead(tmp_path: Path) -> None:
    azure = {
        "CLOUDSCALE_DATA_DIR": str(tmp_path),
        "CLOUDSCALE_BACKEND": "azure",
        "ServiceBusConnection__fullyQualifiedNamespace": "cs-test.servicebus.windows.net",
        "CLOUDSCALE_RATE_LIMIT_TABLE_ENDPOINT": "https://cstest.table.core.windows.net",
        "CosmosDBConnection__accountEndpoint": "https://cs-test.documents.azure.com:443/",
    }
    shown = CliRunner().invoke(main, ["tail"], env=azure)
    assert shown.exit_code == 1
    assert "local host only" in shown.output


def _store(path: Path, *events: LiveEvent) -> None:
    async def write() -> None:
        log = EmbeddedLiveEvents(path, 100)
        log.record(list(events))
        await log.close()

    asyncio.run(write())


def test_tail_follows_a_file_made_anew_after_the_data_folder_was_cleared(tmp_path: Path) -> None:
    # GIVEN tail following a data folder's kept events
    path = tmp_path / LIVE_EVENTS_FILE
    _store(path, accepted(1))
    process = subprocess.Popen(
        [sys.executable, "-m", "cloudscale_local.cli.main", "tail", "--json"],
        cwd=Path(__file__).parents[2],
        env={**os.environ, "CLOUDSCALE_DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert orjson.loads(process.stdout.readline())["eventType"] == "page_view"
        # WHEN the folder's file is removed (rm -rf .cloudscale) and a new host keeps new events
        for leftover in tmp_path.glob(LIVE_EVENTS_FILE + "*"):
            leftover.unlink()
        _store(path, rejected(2, {"eventType": "after-the-clear"}))
        # THEN tail shows them (a line within the timeout, or the test fails on readline's EOF)
        timer = threading.Timer(20, process.kill)
        timer.start()
        try:
            line = process.stdout.readline()
        finally:
            timer.cancel()
        assert line, "tail printed nothing for the new file's event"
        assert orjson.loads(line)["event"] == {"eventType": "after-the-clear"}
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_show_never_writes_a_kept_events_control_characters_to_the_terminal(tmp_path: Path) -> None:
    # GIVEN a rejected item whose text holds terminal escapes (any web page can post one to the
    # Segment API as text/plain; the refused request's items are kept)
    hostile = "\x1b]0;pwned\x07\x1b[2J"
    _store(
        tmp_path / LIVE_EVENTS_FILE,
        LiveEvent(
            at=rejected(1).at,
            outcome="rejected",
            api="segment",
            status=401,
            tenant_id=f"acme{hostile}",
            event_type=f"track{hostile}",
            event_id=f"e1{hostile}",
            reasons=(LiveEventReason("extra_forbidden", f"no {hostile}", f"colour{hostile}"),),
            event={"type": "track"},
        ),
    )
    # WHEN it is shown at a terminal (colours on: nothing stripped)
    shown = cli(tmp_path, "live", "show", color=True)
    # THEN its escapes are shown as text, never sent to the terminal
    assert shown.exit_code == 0, shown.output
    assert "\x1b]" not in shown.stdout
    assert "\x07" not in shown.stdout
    assert "\x1b[2J" not in shown.stdout
    assert "acme\\x1b]0;pwned\\x07\\x1b[2J" in shown.stdout
