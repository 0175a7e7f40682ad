"""`cloudscale erase`, `cloudscale erasures` and `cloudscale suppressions`: data-subject erasures by hand.

`erase` records an erasure and runs it to completion in this process, a line per step as it
ends; the record is the same one `POST /api/privacy/erasures` makes, so an erasure this command
could not finish (it was stopped, a store was down) is finished by `erasures resume ID` or by the
pipeline's `privacy_erasures` timer once its lease expires. Reads the same settings as
`cloudscale run` (the data folder embedded; Azure's stores with `CLOUDSCALE_BACKEND=azure`).
Nothing here prints an identifier back: records and tombstones hold only its keyed hash.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import click
import orjson

from cloudscale_local.cli.backend import load_cli_settings, run_with_container
from privacy.erasure import ErasureBusyError, ErasureError, ErasureRunner
from shared.assembly import build_erasure_runner, build_suppression_admin
from shared.bootstrap import Container
from shared.domain.privacy import ERASURE_STEPS, ErasureRequest, ErasureStep, StepResult, Subject, Suppression

__all__ = ["erase", "erasures", "suppressions"]

T = TypeVar("T")

HASH_SHOWN = 12
"""Characters of a subject hash a table shows (enough to tell subjects apart, and to match a status)."""
STORES: tuple[tuple[ErasureStep, str], ...] = (
    ("events", "event store"),
    ("analytics", "analytics"),
    ("dead_letters", "dead letters"),
)


def subject_options(command: Callable[..., None]) -> Callable[..., None]:
    """`--tenant T (--user U | --anonymous-id A)`."""
    command = click.option("--anonymous-id", "anonymous_id", help="The subject's anonymousId.")(command)
    command = click.option("--user", "user_id", help="The subject's userId.")(command)
    return click.option("--tenant", "tenant_id", required=True, help="The subject's tenant.")(command)


def _subject(tenant_id: str, user_id: str | None, anonymous_id: str | None) -> Subject:
    if (user_id is None) == (anonymous_id is None):
        raise click.UsageError("give exactly one of --user and --anonymous-id")
    if user_id is not None:
        return Subject(tenant_id, "userId", user_id)
    assert anonymous_id is not None
    return Subject(tenant_id, "anonymousId", anonymous_id)


def _run(action: Callable[[Container], Awaitable[T]]) -> T:
    """`action` on a container built from the environment; erasure and store errors as one-line errors."""

    async def guarded(container: Container) -> T:
        try:
            return await action(container)
        except ErasureBusyError as exc:
            raise click.ClickException(f"{exc}; follow it with `cloudscale erasures show ID`") from None
        except ErasureError as exc:
            raise click.ClickException(str(exc)) from None

    return run_with_container(load_cli_settings(), guarded, make_container=Container)


@click.command()
@subject_options
@click.option(
    "--delete-only",
    is_flag=True,
    help="Delete what is stored now but accept the subject's later events (default: suppress them too).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the finished erasure's status as JSON instead.")
def erase(tenant_id: str, user_id: str | None, anonymous_id: str | None, delete_only: bool, as_json: bool) -> None:
    """Erase one subject everywhere and keep it erased: tombstone, every store, then a check."""
    subject = _subject(tenant_id, user_id, anonymous_id)

    async def action(container: Container) -> ErasureRequest:
        runner = build_erasure_runner(container)
        request = await runner.request(subject, suppress=not delete_only, claim=True)
        if not as_json:
            click.echo(f"erasure {request.id}: {_describe(request)}")
        return await runner.run(request.id, on_progress=None if as_json else _print_step)

    _finished(_run(action), as_json)


@click.group()
def erasures() -> None:
    """Follow and resume recorded erasures."""


@erasures.command("list")
@click.option("--unfinished", is_flag=True, help="Only those not finished yet.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of statuses.")
def list_erasures(unfinished: bool, as_json: bool) -> None:
    """Every recorded erasure, oldest first."""

    async def action(container: Container) -> Sequence[ErasureRequest]:
        return await container.privacy_store.list_erasures(unfinished_only=unfinished)

    records = _run(action)
    if as_json:
        click.echo(orjson.dumps([record.to_status() for record in records]).decode())
        return
    if not records:
        click.echo("no erasures")
        return
    rows = [
        (
            record.id,
            record.tenant_id,
            record.field,
            "suppress" if record.suppress else "delete",
            record.status,
            record.next_step() or "-",
            _time(record.created_at),
            _time(record.finished_at),
        )
        for record in records
    ]
    _table(("ID", "TENANT", "FIELD", "MODE", "STATUS", "NEXT STEP", "CREATED (UTC)", "FINISHED (UTC)"), rows)


@erasures.command()
@click.argument("erasure_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the status JSON.")
def show(erasure_id: str, as_json: bool) -> None:
    """One erasure's status: what each step found and removed, and when it finished."""

    async def action(container: Container) -> ErasureRequest:
        return await build_erasure_runner(container).get(erasure_id)

    record = _run(action)
    if as_json:
        click.echo(orjson.dumps(record.to_status(), option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"erasure {record.id}: {_describe(record)}")
    click.echo(f"status {record.status}, created {_time(record.created_at)}, finished {_time(record.finished_at)}")
    for step in ERASURE_STEPS:
        click.echo(_step_line(step, record.step(step)))


@erasures.command()
@click.argument("erasure_id", metavar="ID")
def resume(erasure_id: str) -> None:
    """Run an unfinished erasure to completion here (once no other runner holds it)."""

    async def action(container: Container) -> ErasureRequest:
        runner: ErasureRunner = build_erasure_runner(container)
        record = await runner.get(erasure_id)
        click.echo(f"erasure {record.id}: {_describe(record)}")
        for step in ERASURE_STEPS:
            if record.step(step).done:
                click.echo(_step_line(step, record.step(step)))
        return await runner.run(erasure_id, on_progress=_print_step)

    _finished(_run(action), as_json=False)


@click.group()
def suppressions() -> None:
    """The tombstones that keep erased subjects erased."""


@suppressions.command("list")
@click.option("--tenant", "tenant_id", required=True, help="The tenant.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_suppressions(tenant_id: str, as_json: bool) -> None:
    """The tenant's suppressed subjects, by hash (the identifiers are not kept)."""

    async def action(container: Container) -> Sequence[Suppression]:
        return await build_suppression_admin(container).list(tenant_id)

    found = _run(action)
    if as_json:
        click.echo(orjson.dumps([_suppression_dict(s) for s in found]).decode())
        return
    if not found:
        click.echo(f"no suppressions in tenant {tenant_id}")
        return
    rows = [(s.subject_hash[:HASH_SHOWN], s.field, s.mode, _time(s.erased_at), _time(s.lifted_at)) for s in found]
    _table(("HASH", "FIELD", "MODE", "ERASED (UTC)", "LIFTED (UTC)"), rows)


@suppressions.command()
@subject_options
def lift(tenant_id: str, user_id: str | None, anonymous_id: str | None) -> None:
    """Accept the subject's new events again (what was erased stays dropped)."""
    subject = _subject(tenant_id, user_id, anonymous_id)

    async def action(container: Container) -> Suppression | None:
        return await build_suppression_admin(container).lift(subject)

    lifted = _run(action)
    if lifted is None:
        raise click.ClickException(f"tenant {tenant_id} has no suppression for this {subject.field}")
    click.echo(
        f"lifted: events of this {subject.field} received from now on are accepted "
        f"(erased at {_time(lifted.erased_at)}; what was received before stays dropped)"
    )


# --- output ------------------------------------------------------------------------------------------


def _describe(record: ErasureRequest) -> str:
    mode = "suppress" if record.suppress else "delete only"
    return f"tenant {record.tenant_id}, {record.field} {record.subject_hash[:HASH_SHOWN]}..., {mode}"


def _print_step(step: ErasureStep, result: StepResult) -> None:
    click.echo(_step_line(step, result))


def _step_line(step: ErasureStep, result: StepResult) -> str:
    if not result.done:
        return f"  {step:<13} not done"
    counts = "" if result.found is None else f"found {result.found}, removed {result.removed}"
    if step in ("suppress", "settle"):
        counts = "done"
    detail = f"  ({result.detail})" if result.detail else ""
    return f"  {step:<13} {counts}{detail}"


def _finished(record: ErasureRequest, as_json: bool) -> None:
    if as_json:
        click.echo(orjson.dumps(record.to_status(), option=orjson.OPT_INDENT_2).decode())
        return
    counts = ", ".join(f"{label} {record.step(step).removed}" for step, label in STORES)
    click.echo(
        f"erasure {record.id} finished at {_time(record.finished_at)}: removed {counts}, "
        f"then {record.step('verify').removed} more on verification"
    )


def _suppression_dict(suppression: Suppression) -> dict[str, object]:
    return {
        "subjectHash": suppression.subject_hash,
        "field": suppression.field,
        "mode": suppression.mode,
        "erasedAt": suppression.erased_at.isoformat(),
        "liftedAt": suppression.lifted_at.isoformat() if suppression.lifted_at else None,
    }


def _table(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(header), *(len(row[i]) for row in rows)) for i, header in enumerate(headers)]
    for line in (headers, *rows):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def _time(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
