"""`cloudscale dlq purge` and `cloudscale dlq send-poison`: empty the dead-letter queue, and fill it.

Purging deletes what is dead-lettered now, after saying how many and asking (`--yes` skips the
question); a dead letter that arrives meanwhile stays, as does one replayed meanwhile (it is
gone already). It goes through the dead-letter port's `remove`, the one an erasure uses, so it
works on both backends: the embedded queue's dead letters (their bytes overwritten), and on
Azure both Service Bus dead-letter queues.

`send-poison` puts a message on the embedded events queue that the process stage can never
decode, so a running `cloudscale run` parks it as `UndecodableMessage` within a second or so:
a dead letter to look at, replay (it comes back) and purge, made the way the pipeline makes one.
Ingest validates every event before it queues it, so nothing a producer sends over HTTP becomes
poison; the command is how to make one locally.
"""

from __future__ import annotations

import uuid

import click

from cloudscale_local.cli.backend import load_cli_settings, run_with_container
from shared.bootstrap import Container
from shared.domain.envelope import QueueMessage

__all__ = ["POISON_BODY", "purge", "send_poison"]

EVERY_DEAD_LETTER = 2**62
"""The `list` limit that means all of them (the port lists up to a limit)."""
POISON_BODY = b"not JSON: a poison message from `cloudscale dlq send-poison`"


@click.command()
@click.option("--yes", "-y", is_flag=True, help="Do not ask first.")
def purge(yes: bool) -> None:
    """Delete every dead letter there is now, for good (they cannot be replayed afterwards)."""
    settings = load_cli_settings()

    async def ids(container: Container) -> list[str]:
        return [dead_letter.id for dead_letter in await container.dead_letter_browser.list(EVERY_DEAD_LETTER)]

    found = run_with_container(settings, ids)
    if not found:
        click.echo("The dead-letter queue is empty: nothing to purge.")
        return
    count = _count(len(found))
    if not yes and not click.confirm(f"Delete {count} for good? They cannot be replayed afterwards.", default=False):
        click.echo("Nothing was purged.")
        return

    async def remove(container: Container) -> int:
        return await container.dead_letter_browser.remove(found)

    removed = run_with_container(settings, remove)
    gone = len(found) - removed
    click.echo(f"Purged {_count(removed)}." + (f" {gone} had left the queue meanwhile (replayed?)." if gone else ""))


@click.command("send-poison")
def send_poison() -> None:
    """Queue a message the process stage cannot decode: with `cloudscale run` going, it is dead-lettered."""
    settings = load_cli_settings()
    if settings.backend != "embedded":
        raise click.ClickException("send-poison writes to the embedded queue only; it never sends to Service Bus")
    message = QueueMessage(message_id=f"poison/{uuid.uuid4()}", body=POISON_BODY, content_type="text/plain")

    async def send(container: Container) -> None:
        await container.publisher.publish([message])

    run_with_container(settings, send)
    click.echo(
        f"Queued {message.message_id!r}, which the process stage cannot decode: with `cloudscale run` going it is "
        "dead-lettered as UndecodableMessage (see `cloudscale dlq list`)."
    )


def _count(number: int) -> str:
    return f"{number} dead letter{'' if number == 1 else 's'}"
