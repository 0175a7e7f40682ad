"""`cloudscale export`: every stored event of one person, as JSON lines (the right of access).

An operator answers a data-subject access request with it: the events of one `userId` (or
Segment `anonymousId`) in one tenant, read from the event store (the embedded file, or Cosmos
DB on Azure through the operator's own access, as `cloudscale events get` reads), oldest
`timestamp` first, one stored document a line. Only the event store: analytics holds the same
events in another shape, and what is still queued is not stored yet.

A file is written beside its final name and renamed into place once complete, so an export
that failed halfway never looks like a whole one.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

import click
import orjson

from cloudscale_local.cli.backend import load_cli_settings, run_with_container
from shared.bootstrap import Container
from shared.domain.privacy import Subject
from shared.ports import EventStoreError

__all__ = ["export"]


@click.command("export")
@click.option("--tenant", "tenant_id", required=True, help="The tenant whose events to export.")
@click.option("--user", "user_id", help="The person's userId.")
@click.option("--anonymous-id", "anonymous_id", help="The person's anonymousId (Segment's), instead of --user.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file (replaced once the export is complete) instead of standard output.",
)
def export(tenant_id: str, user_id: str | None, anonymous_id: str | None, output: Path | None) -> None:
    """Write every stored event of one user of TENANT as JSON lines, oldest first.

    A progress bar goes to standard error when the events go to a file (or to a pipe while
    standard error is a terminal); the count exported is said there at the end.
    """
    subject = _subject(tenant_id, user_id, anonymous_id)
    settings = load_cli_settings()
    written = run_with_container(settings, lambda container: _export(container, subject, output))
    who = "user" if subject.field == "userId" else "anonymous id"
    if written == 0:
        click.echo(f"no stored events of that {who} in tenant {tenant_id}: nothing exported", err=True)
    else:
        noun = "event" if written == 1 else "events"
        click.echo(f"exported {written} {noun}" + (f" to {output}" if output else ""), err=True)


def _subject(tenant_id: str, user_id: str | None, anonymous_id: str | None) -> Subject:
    if (user_id is None) == (anonymous_id is None):
        raise click.UsageError("give exactly one of --user or --anonymous-id")
    if user_id is not None:
        return Subject(tenant_id, "userId", user_id)
    assert anonymous_id is not None  # the check above
    return Subject(tenant_id, "anonymousId", anonymous_id)


async def _export(container: Container, subject: Subject, output: Path | None) -> int:
    store = container.event_store
    written = 0
    try:
        total = await store.count_subject_events(subject)
        with _sink(output) as sink, _progress(total, shown=_show_progress(output)) as progress:
            async for event in store.subject_events(subject):
                sink.write(orjson.dumps(event.to_document(), option=orjson.OPT_APPEND_NEWLINE))
                written += 1
                progress.update(1)
    except EventStoreError as exc:
        raise click.ClickException(f"the event store could not be read: {exc}") from None
    return written


@contextlib.contextmanager
def _sink(output: Path | None) -> Iterator[BinaryIO]:
    """Standard output, or a partial file renamed to `output` only when everything was written."""
    if output is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    partial = output.with_name(output.name + ".partial")
    try:
        with partial.open("wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        partial.replace(output)
    except OSError as exc:
        raise click.ClickException(f"could not write {output}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)


def _show_progress(output: Path | None) -> bool:
    # A bar drawn on the terminal that also shows the exported lines would garble both.
    return output is not None or (sys.stderr.isatty() and not sys.stdout.isatty())


class _Progress(Protocol):
    def update(self, n_steps: int, /) -> None: ...


class _NoProgress:
    def update(self, n_steps: int, /) -> None:
        """Nothing to draw."""


@contextlib.contextmanager
def _progress(total: int, *, shown: bool) -> Iterator[_Progress]:
    if not shown or total == 0:
        yield _NoProgress()
        return
    with click.progressbar(length=total, label="exporting", file=sys.stderr) as bar:
        yield bar
