"""`cloudscale reconcile`: make analytics hold every stored event, on demand.

The same reconciliation the `reconcile_analytics` timer function runs every hour on Azure:
compare the event store and analytics hour by hour over a window, and re-send the events
analytics is missing. Safe to run any time, beside a running pipeline: analytics keeps one
row per event.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

import click
import orjson

from changefeed.reconcile import ReconcileReport, hour_window
from shared.assembly import build_analytics_reconciler
from shared.bootstrap import Container
from shared.ports import PortError
from shared.settings import SettingsError, load_settings

__all__ = ["reconcile"]


@click.command()
@click.option("--hours", default=24, show_default=True, type=click.IntRange(1, 24 * 31), help="Whole hours to check.")
@click.option(
    "--settle-seconds",
    default=60,
    show_default=True,
    type=click.IntRange(min=0),
    help="Leave out events stored this recently (they may still be on their way).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def reconcile(hours: int, settle_seconds: int, as_json: bool) -> None:
    """Re-send to analytics every stored event it is missing."""
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    start, end = hour_window(datetime.now(UTC) - timedelta(seconds=settle_seconds), hours)
    try:
        report = asyncio.run(_reconcile(Container(settings), start, end))
    except PortError as exc:
        raise click.ClickException(f"reconciliation stopped: {exc}") from None
    if as_json:
        click.echo(orjson.dumps(_as_dict(report)).decode())
        return
    click.echo(f"checked {_text(start)} to {_text(end)}: {report.hours_checked} hour(s) with stored events")
    for difference in report.differences:
        click.echo(
            f"  {_text(difference.hour)}: {difference.stored} stored, {difference.in_analytics} in analytics, "
            f"re-sent {difference.resent}"
        )
    click.echo(f"re-sent {report.resent} event(s)" if report.resent else "analytics holds every stored event")
    if report.suppressed:
        click.echo(f"left out {report.suppressed} event(s) of erased subjects (never re-sent)")


async def _reconcile(container: Container, start: datetime, end: datetime) -> ReconcileReport:
    try:
        return await build_analytics_reconciler(container).reconcile(start, end)
    finally:
        await container.close()


def _as_dict(report: ReconcileReport) -> dict[str, object]:
    return {
        "start": _text(report.start),
        "end": _text(report.end),
        "hoursChecked": report.hours_checked,
        "resent": report.resent,
        "suppressed": report.suppressed,
        "differences": [
            {
                "hour": _text(d.hour),
                "stored": d.stored,
                "inAnalytics": d.in_analytics,
                "resent": d.resent,
                "suppressed": d.suppressed,
            }
            for d in report.differences
        ],
    }


def _text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
