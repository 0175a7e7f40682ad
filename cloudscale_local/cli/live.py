"""`cloudscale tail` and `cloudscale live show|reset`: the events ingest kept, at the terminal.

Both read `live-events.sqlite3` in the data folder directly (read-only, `LiveEventsFile`), so
they see every host instance's events whatever its port, and need no running host to show what
was kept. `tail` prints the last few kept events, then polls for newer ones
(`POLL_SECONDS`) until Ctrl-C; `live show` prints the kept ones and exits; `live reset` forgets
them (the one reset: the dashboard's reset button does the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import click
import orjson

from cloudscale_local.cli.backend import load_cli_settings
from cloudscale_local.terminal_text import escape_controls
from shared.adapters.live_events.embedded import LIVE_EVENTS_FILE, EmbeddedLiveEvents, LiveEventsFile
from shared.domain.live_events import LiveEvent, LiveEventFilter, LiveEventOutcome

__all__ = ["POLL_SECONDS", "format_line", "live", "tail"]

POLL_SECONDS: Final = 0.2
"""How often `tail` looks for new events (the log itself stores them within 0.1 s)."""
TAIL_BACKLOG: Final = 10
"""How many of the newest kept events `tail` prints before following."""
_BATCH: Final = 500

_OUTCOME_COLOURS: Final = {"accepted": "green", "rejected": "red"}


def _data_dir_option() -> click.Option:
    return click.Option(
        ["--data-dir"],
        type=click.Path(file_okay=False, path_type=Path),
        help="The host's data folder (default: CLOUDSCALE_DATA_DIR, else .cloudscale).",
    )


def _filter_options(command: click.Command) -> click.Command:
    command.params.extend(
        [
            click.Option(["--tenant"], help="Only this tenant's events."),
            click.Option(["--type", "event_type"], help="Only events of this eventType."),
            click.Option(["--rejected", "outcome"], flag_value="rejected", help="Only rejected events."),
            click.Option(["--accepted", "outcome"], flag_value="accepted", help="Only accepted events."),
            click.Option(["--json", "as_json"], is_flag=True, help="One JSON object a line (LiveEvent's HTTP shape)."),
            _data_dir_option(),
        ]
    )
    return command


@_filter_options
@click.command()
def tail(
    tenant: str | None, event_type: str | None, outcome: LiveEventOutcome | None, as_json: bool, data_dir: Path | None
) -> None:
    """Follow the events ingest accepts and rejects, as they come (Ctrl-C stops).

    Prints the last few kept events, then each new one, from every host instance writing the
    data folder.
    """
    path = _live_events_path(data_dir)
    where = LiveEventFilter(tenant_id=tenant, event_type=event_type, outcome=outcome)
    kept: LiveEventsFile | None = None
    try:
        _wait_for(path)
        opened = _identity(path)
        kept = _open(path)
        backlog = list(reversed(kept.latest(TAIL_BACKLOG, where)))
        _print(backlog, as_json)
        last = backlog[-1].seq if backlog else kept.last_seq()
        while True:
            time.sleep(POLL_SECONDS)
            if _identity(path) != opened:
                # The file was removed or made anew (the data folder was cleared): an open
                # connection would go on reading the removed one. Start over on the new file.
                kept.close()
                kept = None
                while (opened := _identity(path)) is None:
                    time.sleep(POLL_SECONDS)
                kept = _open(path)
                last = 0
            # Read before the events: a row stored after this is past it, so never skipped.
            newest = kept.last_seq()
            if newest < last:
                last = 0  # The file was made anew in place: start over.
            while new := kept.after(last, _BATCH, where):
                _print(new, as_json)
                last = new[-1].seq
            # Past what did not match too, so a filter does not scan it again.
            last = max(last, newest)
    except KeyboardInterrupt:
        return
    except BrokenPipeError:
        # `cloudscale tail | head`: the reader left. Python flushes stdout again at exit, which
        # would fail too: point it at /dev/null first (the Python docs' advice, "Note on SIGPIPE").
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except sqlite3.Error as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    finally:
        if kept is not None:
            kept.close()


@click.group()
def live() -> None:
    """The events ingest kept for watching (the last accepted and rejected ones)."""


@_filter_options
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100_000), help="How many, newest.")
@live.command("show")
def show(
    tenant: str | None,
    event_type: str | None,
    outcome: LiveEventOutcome | None,
    as_json: bool,
    data_dir: Path | None,
    limit: int,
) -> None:
    """Print the newest kept events (oldest of them first) and exit."""
    path = _live_events_path(data_dir)
    if not path.is_file():
        raise click.ClickException(_not_yet(path))
    where = LiveEventFilter(tenant_id=tenant, event_type=event_type, outcome=outcome)
    try:
        with _open(path) as kept:
            events = list(reversed(kept.latest(limit, where)))
    except sqlite3.Error as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    if not events and not as_json:
        click.echo("no kept events" + (" match" if where != LiveEventFilter() else ""), err=True)
    _print(events, as_json)


@live.command("reset")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help=_data_dir_option().help)
def reset(data_dir: Path | None) -> None:
    """Forget every kept event (each host's next ones are kept as before)."""
    path = _live_events_path(data_dir)
    if not path.is_file():
        click.echo(f"forgot 0 kept events (none kept at {path})")
        return

    async def forget() -> int:
        log = EmbeddedLiveEvents(path, kept=1)
        try:
            return await log.reset()
        finally:
            await log.close()

    try:
        forgotten = asyncio.run(forget())
    except (sqlite3.Error, OSError) as exc:
        raise click.ClickException(f"cannot reset {path}: {exc}") from None
    click.echo(f"forgot {forgotten} kept event{'' if forgotten == 1 else 's'}")


def format_line(event: LiveEvent) -> str:
    """One event on one line: time, outcome, api, status, tenant, type, eventId, and a rejected one's reasons."""
    outcome = click.style(f"{event.outcome:<8}", fg=_OUTCOME_COLOURS.get(event.outcome), bold=True)
    at = event.at.astimezone().strftime("%H:%M:%S.%f")[:-3]
    line = (
        f"{at}  {outcome}  {escape_controls(event.api):<7} {event.status}  {escape_controls(event.tenant_id or '-')}  "
        f"{escape_controls(event.event_type or '-')}  {escape_controls(event.event_id or '-')}"
    )
    if event.reasons:
        shown = "; ".join(
            f"{reason.field + ': ' if reason.field else ''}{reason.code} {reason.message}" for reason in event.reasons
        )
        line += "  " + click.style(escape_controls(shown), fg="red")
    return line


def _print(events: Iterable[LiveEvent], as_json: bool) -> None:
    for event in events:
        click.echo(orjson.dumps(event.to_dict()).decode() if as_json else format_line(event))
    sys.stdout.flush()  # A pipe is block-buffered: a follower's reader sees each event at once.


def _live_events_path(data_dir: Path | None) -> Path:
    settings = load_cli_settings()
    if settings.backend != "embedded":
        raise click.ClickException(
            "events are kept for watching by the local host only; on Azure, the workbook's live events view "
            "and Application Insights show them (README)"
        )
    folder = data_dir or settings.data_dir
    if not folder.is_dir():
        raise click.ClickException(
            f"no data folder at {folder}: start the pipeline with `cloudscale run` first "
            "(or pass --data-dir / set CLOUDSCALE_DATA_DIR to where it keeps its data)"
        )
    if settings.live_events_kept == 0:
        click.echo("note: CLOUDSCALE_LIVE_EVENTS_KEPT=0 here: a host started with it keeps no events", err=True)
    return folder / LIVE_EVENTS_FILE


def _not_yet(path: Path) -> str:
    return f"no events kept yet at {path}: start `cloudscale run` and send an event"


def _wait_for(path: Path) -> None:
    if path.is_file():
        return
    click.echo(_not_yet(path) + "; waiting for the first one (Ctrl-C stops)", err=True)
    while not path.is_file():
        time.sleep(POLL_SECONDS)


def _identity(path: Path) -> tuple[int, int] | None:
    """Which file `path` is (device, inode), or None while there is none."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def _open(path: Path) -> LiveEventsFile:
    return LiveEventsFile(path)
