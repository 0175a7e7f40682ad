"""`cloudscale dlq`: look at dead-lettered messages and replay them once the cause is fixed.

Reads the same settings as `cloudscale run`: the embedded queue under `CLOUDSCALE_DATA_DIR`,
or with `CLOUDSCALE_BACKEND=azure` the Service Bus poison queue and the events queue's
dead-letter sub-queue. Listing and showing never lock or count a delivery. A replay puts each
message back on the events queue (embedded: under its own message id; Service Bus: under an id
derived from the dead letter, which duplicate detection has not seen), and the event store
keeps one document per (tenantId, eventId), so replaying twice is harmless. Machine-readable output
(`--json`) goes to stdout; the progress bar to stderr.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from cloudscale_local.cli.backend import load_cli_settings, run_with_container
from cloudscale_local.dead_letter_view import dead_letter_summary, parsed_body
from shared.bootstrap import Container
from shared.ports import DeadLetter, DeadLetterBrowser, ReplayProgress, ReplayResult
from shared.settings import Settings

__all__ = ["dlq"]

T = TypeVar("T")

BODY_PREVIEW_BYTES = 200
"""How much of a body that is not JSON `show` prints (as a Python bytes literal)."""
UNLIMITED_WIDTH = 100_000
"""The width `list` lays its table out for when stdout is not a terminal."""
LIST_REPLAYED_UP_TO = 20
"""A replay names the messages it moved when there are at most this many; beyond, it counts them."""


@click.group()
def dlq() -> None:
    """Inspect and replay dead-lettered messages.

    IDs are the ones `list` shows. On Azure they name the queue too: `dlq-N` for the events
    queue's dead-letter sub-queue, `poison-N` for the poison queue.
    """


@dlq.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def list_command(limit: int, as_json: bool) -> None:
    """List dead letters, oldest first."""
    dead_letters = _run(load_cli_settings(), lambda browser: browser.list(limit))
    if as_json:
        click.echo(_dumps([dead_letter_summary(dead_letter) for dead_letter in dead_letters]))
        return
    if not dead_letters:
        click.echo("The dead-letter queue is empty.")
        return
    console = Console()
    if not console.is_terminal:
        # Piped or redirected: whole lines, for grep and friends, rather than a terminal's width.
        console = Console(width=UNLIMITED_WIDTH)
    console.print(_table(dead_letters, console.width))
    if len(dead_letters) >= limit:
        click.echo(f"Showing the first {limit}; there may be more (--limit).")


@dlq.command()
@click.argument("dead_letter_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def show(dead_letter_id: str, as_json: bool) -> None:
    """Show one dead letter: why it failed, and its body."""
    dead_letter = _run(load_cli_settings(), lambda browser: browser.get(dead_letter_id))
    if dead_letter is None:
        raise click.ClickException(f"No dead letter with id {dead_letter_id!r} (`cloudscale dlq list` shows the ids).")
    if as_json:
        click.echo(_dumps(_detail(dead_letter)))
        return
    for label, value in _fields(dead_letter):
        click.echo(f"{label + ':':<16}{value}")
    click.echo(f"\nBody ({len(dead_letter.body)} bytes):")
    click.echo(_pretty_body(dead_letter.body))


@dlq.command()
@click.argument("dead_letter_ids", metavar="[ID]...", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter there is now.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before replaying --all.")
def replay(dead_letter_ids: tuple[str, ...], replay_all: bool, yes: bool) -> None:
    """Put dead letters back on the events queue, to be processed again.

    Each one leaves the dead-letter queue only once the events queue has it. Replaying one
    that was already replayed changes nothing (it is no longer there: exit status 1).
    """
    if replay_all == bool(dead_letter_ids):
        raise click.UsageError("Give the IDs to replay, or --all (not both).")
    settings = load_cli_settings()
    if replay_all and not yes:
        click.confirm(f"Replay every dead letter to queue {settings.events_queue!r}?", abort=True)
    replayed: list[DeadLetter] = []
    try:
        result = _run(settings, lambda browser: _replay_with_progress(browser, dead_letter_ids or None, replayed))
    except click.ClickException:
        if replayed:
            click.echo(_replayed(replayed, f"queue {settings.events_queue!r} before the failure"))
        raise
    _report(result, settings, replay_all=replay_all)


async def _replay_with_progress(
    browser: DeadLetterBrowser, dead_letter_ids: Sequence[str] | None, replayed: list[DeadLetter]
) -> ReplayResult:
    """Run the replay under a progress bar on stderr, recording each message as it goes."""
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # a bar is for people; logs of a scripted replay stay clean
    )
    task = progress.add_task("Replaying", total=None)

    def update(step: ReplayProgress) -> None:
        if step.dead_letter is not None:
            replayed.append(step.dead_letter)
        progress.update(task, total=step.total, completed=step.done)

    with progress:
        return await browser.replay(dead_letter_ids, update)


def _report(result: ReplayResult, settings: Settings, *, replay_all: bool) -> None:
    if result.replayed:
        click.echo(_replayed(result.replayed, f"queue {settings.events_queue!r}"))
    elif replay_all:
        click.echo("The dead-letter queue is empty: nothing to replay.")
    if result.not_found:
        raise click.ClickException(
            "Not in the dead-letter queue (already replayed, or a wrong id): " + ", ".join(result.not_found)
        )


def _replayed(dead_letters: Sequence[DeadLetter], destination: str) -> str:
    """`Replayed 2 messages to queue 'events': 1, 3.` (the ids left out when there are many)."""
    count = len(dead_letters)
    text = f"Replayed {count} message{'s' if count != 1 else ''} to {destination}"
    if count > LIST_REPLAYED_UP_TO:
        return text + "."
    return f"{text}: {', '.join(dead_letter.id for dead_letter in dead_letters)}."


def _run(settings: Settings, action: Callable[[DeadLetterBrowser], Awaitable[T]]) -> T:
    """Run `action` on the dead-letter browser the container chooses from `settings`."""
    # `Container` looked up here, at call time: tests put a failing one in its place.
    return run_with_container(
        settings, lambda container: action(container.dead_letter_browser), make_container=Container
    )


def _table(dead_letters: Sequence[DeadLetter], width: int) -> Table:
    """A plain table; ids are never cut (they are typed back), the description fills what is left of `width`."""
    headers = ("ID", "SOURCE", "REASON", "MESSAGE ID", "DELIVERIES", "DEAD-LETTERED (UTC)")
    rows = [
        (
            dead_letter.id,
            dead_letter.source,
            dead_letter.reason or "-",
            dead_letter.message_id,
            _count(dead_letter.delivery_count),
            _time(dead_letter.dead_lettered_at or dead_letter.enqueued_at),
        )
        for dead_letter in dead_letters
    ]
    widths = [max(len(header), *(len(row[index]) for row in rows)) for index, header in enumerate(headers)]
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 2, 0, 0))
    for header, column_width in zip(headers, widths, strict=True):
        justify: Literal["left", "right"] = "right" if header == "DELIVERIES" else "left"
        table.add_column(header, no_wrap=True, min_width=column_width, justify=justify)
    room = width - sum(column_width + 2 for column_width in widths)
    # Rich would rather drop whole columns than cut one, so the description is cut here.
    show_description = room >= len("DESCRIPTION")
    if show_description:
        table.add_column("DESCRIPTION", no_wrap=True, max_width=room)
    for row, dead_letter in zip(rows, dead_letters, strict=True):
        cells = [*row, _shorten(dead_letter.description or "", room)] if show_description else list(row)
        # Text cells: a description may hold `[...]`, which rich would otherwise read as markup.
        table.add_row(*(Text(cell) for cell in cells))
    return table


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())  # one line
    return text if len(text) <= width else text[: width - 1] + "…"


def _fields(dead_letter: DeadLetter) -> list[tuple[str, str]]:
    message = dead_letter.message
    return [
        ("ID", dead_letter.id),
        ("Source", dead_letter.source),
        ("Message id", dead_letter.message_id),
        ("Reason", dead_letter.reason or "-"),
        ("Description", dead_letter.description or "-"),
        ("Deliveries", _count(dead_letter.delivery_count)),
        ("Enqueued", _time(dead_letter.enqueued_at, zone=True)),
        ("Dead-lettered", _time(dead_letter.dead_lettered_at, zone=True)),
        ("Content type", message.content_type),
        ("Subject", message.subject or "-"),
        ("Correlation id", message.correlation_id or "-"),
        ("Properties", json.dumps(message.application_properties, ensure_ascii=False)),
    ]


def _pretty_body(body: bytes) -> str:
    """Indented JSON if the body is JSON, else a Python bytes literal of its start."""
    try:
        return json.dumps(orjson.loads(body), indent=2, ensure_ascii=False)
    except orjson.JSONDecodeError:
        preview = repr(body[:BODY_PREVIEW_BYTES])
        return preview + (
            f" ... ({len(body) - BODY_PREVIEW_BYTES} more bytes)" if len(body) > BODY_PREVIEW_BYTES else ""
        )


def _detail(dead_letter: DeadLetter) -> dict[str, Any]:
    """The summary plus the message itself; `body` is the parsed JSON body (null if it is not JSON)."""
    message = dead_letter.message
    return {
        **dead_letter_summary(dead_letter),
        "contentType": message.content_type,
        "subject": message.subject,
        "correlationId": message.correlation_id,
        "properties": message.application_properties,
        "body": parsed_body(dead_letter),
        "bodyBase64": base64.b64encode(message.body).decode("ascii"),
    }


def _dumps(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _time(moment: datetime | None, *, zone: bool = False) -> str:
    if moment is None:
        return "-"
    return moment.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if zone else "")
