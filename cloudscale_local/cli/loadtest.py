"""`cloudscale loadtest`: open-loop load at a constant arrival rate, with a summary and JSON report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from cloudscale_local.loadtest import LatencySummary, LoadReport

__all__ = ["loadtest"]


@click.command(context_settings={"max_content_width": 100})
@click.option(
    "--duration", default=60.0, show_default=True, type=click.FloatRange(min=0, min_open=True), help="Seconds of load."
)
@click.option(
    "--target-rps",
    default=1000.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Requests per second (each request carries --batch-size events).",
)
@click.option("--batch-size", default=1, show_default=True, type=click.IntRange(1, 500), help="Events per request.")
@click.option(
    "--ips", default=256, show_default=True, type=click.IntRange(1, 2**24 - 2), help="Distinct client addresses."
)
@click.option("--url", default="http://127.0.0.1:7071", show_default=True, help="The host's base URL.")
@click.option("--path", default="/api/events", show_default=True, help="The endpoint's path.")
@click.option("--tenants", default=10, show_default=True, type=click.IntRange(min=1), help="tenant-0 .. tenant-N-1.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Generator processes sharing the rate (more when one core cannot keep up).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CLOUDSCALE_DATA_DIR",
    show_envvar=True,
    help="The host's data folder, for 202-to-stored and 202-to-analytics latencies (omit: not measured).",
)
@click.option(
    "--drain-seconds",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="How long to wait for accepted events to reach analytics.",
)
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path), help="Write the JSON report here.")
@click.option("--allow-remote", is_flag=True, help="Allow a URL whose host is not loopback.")
@click.option(
    "--write-key",
    envvar="CLOUDSCALE_WRITE_KEY",
    show_envvar=True,
    help="Send this write key (Authorization: Bearer); events then name no tenant, the key's is filled in."
    " Omit for a host in open mode (--tenants then spreads events over tenant-0..N-1).",
)
def loadtest(
    duration: float,
    target_rps: float,
    batch_size: int,
    ips: int,
    url: str,
    path: str,
    tenants: int,
    workers: int,
    data_dir: Path | None,
    drain_seconds: float,
    json_out: Path | None,
    allow_remote: bool,
    write_key: str | None,
) -> None:
    """Send a realistic event mix at a constant rate (open loop) and report throughput and latency.

    Request i is sent at start + i / rate whether or not earlier ones were answered, so a
    slow service shows as latency and errors, never as a lower send rate. Each request
    carries X-Forwarded-For from a pool of --ips addresses so the per-IP rate limit is
    spread: start the host with CLOUDSCALE_TRUSTED_PROXIES=127.0.0.1/32 or every request
    counts against one address. The host's global limit (CLOUDSCALE_RATE_LIMIT_GLOBAL_PER_MINUTE,
    10,000 requests a minute by default) answers 429 beyond that; raise it to measure more.

    \b
    Example, with `CLOUDSCALE_TRUSTED_PROXIES=127.0.0.1/32 cloudscale run` going:
      cloudscale loadtest --duration 60 --target-rps 1000 --data-dir .cloudscale --json-out load.json
    """
    # Imported here: aiohttp and the generator would slow every other `cloudscale` command's start.
    from cloudscale_local.loadtest import LoadConfig, ProgressPrinter, is_loopback_url, run_load

    if not allow_remote and not is_loopback_url(url):
        raise click.UsageError(
            f"{url} is not a loopback address: load goes to 127.0.0.1, ::1 or localhost only, "
            "unless --allow-remote is given (and you may load that service)"
        )
    try:
        config = LoadConfig(
            url=url,
            duration=duration,
            target_rps=target_rps,
            batch_size=batch_size,
            ips=ips,
            tenants=tenants,
            path=path,
            workers=workers,
            data_dir=data_dir,
            drain_seconds=drain_seconds,
            write_key=write_key,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(
        f"loadtest: {target_rps:g} requests/s of {batch_size} event(s) for {duration:g} s to {config.endpoint}"
        f" ({workers} worker{'s' if workers > 1 else ''}, {ips} client addresses"
        f"{', with a write key' if write_key else ', no write key'})",
        err=True,
    )
    printer = ProgressPrinter(sys.stderr)
    try:
        report = run_load(config, printer)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        printer.close()
    print_summary(report, Console())
    if json_out is not None:
        json_out.write_bytes(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")
        click.echo(f"JSON report written to {json_out}", err=True)


def print_summary(report: LoadReport, console: Console) -> None:
    """The report as a readable table, then what to make of it."""
    table = Table(title="Load test", title_justify="left", show_header=False)
    table.add_column("measure", style="bold")
    table.add_column("value", overflow="fold")
    late = report.behind_schedule
    rows = [
        (
            "target",
            f"{report.target_rps:g} requests/s x {report.batch_size} event(s) for {report.duration_seconds:g} s",
        ),
        ("achieved send rate", f"{report.achieved_rps:.1f} requests/s"),
        (
            "requests sent",
            f"{report.requests_sent} of {report.requests_scheduled} scheduled"
            + (f" ({late.skipped} never sent)" if late.skipped else ""),
        ),
        ("accepted", f"{report.events_accepted} events ({report.accepted_events_per_second:.1f} events/s)"),
        ("answers", ", ".join(f"{key}: {count}" for key, count in report.status_counts.items()) or "none"),
        ("ingest latency", _latency(report.ingest_latency_ms, with_p90=True)),
        (
            "behind schedule",
            f"{late.late_sends} sends > {late.threshold_ms:g} ms late, worst {late.worst_lag_ms:.1f} ms"
            + (f", in-flight cap hit {late.in_flight_cap_hits} times" if late.in_flight_cap_hits else ""),
        ),
        (
            "generator CPU",
            f"{report.generator_cpu_seconds:.2f} s ({report.generator_cpu_percent:.0f}% of one core,"
            f" {report.workers} worker{'s' if report.workers > 1 else ''})",
        ),
    ]
    if report.error_kinds:
        rows.append(("transport errors", ", ".join(f"{kind}: {n}" for kind, n in report.error_kinds.items())))
    e2e = report.end_to_end
    if e2e.measured:
        followed = f"{e2e.tracked} events followed" + (" (a sample)" if e2e.sampled else "")
        rows.append(("202 -> stored", _latency(e2e.to_stored_ms)))
        rows.append(("202 -> analytics", _latency(e2e.to_analytics_ms)))
        rows.append(("end to end", f"{followed}, {e2e.arrived} arrived, {e2e.missing} never did"))
    else:
        rows.append(("end to end", f"not measured: {e2e.reason}"))
    for measure, value in rows:
        table.add_row(measure, Text(value))  # Text: a value is never read as rich markup
    console.print(table)
    # Not an alternative to the verdict below: a generator that was late (one late send in a
    # short run is enough) does not explain why nothing answered, and the host not running is
    # what the user has to fix first.
    if report.requests_sent and report.status_counts.get("error", 0) == report.requests_sent:
        console.print(f"[bold red]no request was answered:[/] is the host running at {escape(report.url)}?")
    reason = report.fell_behind_reason()
    if reason:
        console.print(
            f"[bold yellow]the generator fell behind:[/] {escape(reason)}; the numbers measure the generator, not"
            " the service (try --workers, or a lower --target-rps)"
        )
    refused = report.status_counts.get("401", 0) + report.status_counts.get("403", 0)
    if refused:
        console.print(
            f"[bold yellow]{refused} requests were refused for their write key (401/403):[/] does the host require"
            " keys (CLOUDSCALE_WRITE_KEYS=required)? pass --write-key with a live key of an active tenant"
        )
    limited = report.status_counts.get("429", 0)
    if limited:
        console.print(
            f"[bold yellow]{limited} requests were rate limited (429):[/] the host's global limit is"
            " CLOUDSCALE_RATE_LIMIT_GLOBAL_PER_MINUTE; per client address, is CLOUDSCALE_TRUSTED_PROXIES=127.0.0.1/32"
            " set on the host?"
        )
    if e2e.measured and e2e.missing:
        console.print(
            f"[bold yellow]{e2e.missing} accepted events were not in analytics after {e2e.waited_seconds:g} s[/]"
        )


def _latency(summary: LatencySummary, *, with_p90: bool = False) -> str:
    if not summary.count:
        return "no samples"
    parts = [f"p50 {summary.p50:.1f}"]
    if with_p90:
        parts.append(f"p90 {summary.p90:.1f}")
    parts += [f"p99 {summary.p99:.1f}", f"max {summary.max:.1f} ms"]
    return ", ".join(parts)
