"""`cloudscale`: run the pipeline locally and operate it."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from cloudscale_local.cli.analytics import query, report
from cloudscale_local.cli.dlq import dlq
from cloudscale_local.cli.dlq_purge import purge, send_poison
from cloudscale_local.cli.entry import find_script_root
from cloudscale_local.cli.events import events
from cloudscale_local.cli.export import export
from cloudscale_local.cli.kusto import kusto_setup
from cloudscale_local.cli.live import live, tail
from cloudscale_local.cli.loadtest import loadtest
from cloudscale_local.cli.local_settings import (
    LOCAL_SETTINGS_FILE,
    LocalSettingsError,
    apply_local_settings,
    read_local_settings,
)
from cloudscale_local.cli.privacy import erase, erasures, suppressions
from cloudscale_local.cli.reconcile import reconcile
from cloudscale_local.cli.tenants import keys, tenants
from cloudscale_local.host.host_config import HostConfigError
from cloudscale_local.host.worker_rules import FunctionLoadError
from shared.adapters.sqlite.worker import StoreFileError
from shared.settings import SettingsError

__all__ = ["main"]

IN_SCRIPT_ROOT = "<script root>/" + LOCAL_SETTINGS_FILE
"""What `--local-settings` without a path stands for."""


class _Cloudscale(click.Group):
    """The group, with `--local-settings` taking a path only when the word after it is not a command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # click would take `cloudscale --local-settings run` as the path "run".
        for index, arg in enumerate(args[:-1]):
            if arg == "--local-settings" and args[index + 1] in self.commands:
                args = [*args[: index + 1], IN_SCRIPT_ROOT, *args[index + 1 :]]
                break
        return super().parse_args(ctx, args)


@click.group(cls=_Cloudscale, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cloudscale", prog_name="cloudscale", message="%(prog)s %(version)s")
@click.option(
    "--local-settings",
    "local_settings",
    is_flag=False,
    flag_value=IN_SCRIPT_ROOT,
    default=None,
    metavar="[PATH]",
    help=(
        "Apply a local.settings.json's Values before the command runs, as func start does (a variable already "
        "set wins). Without PATH: local.settings.json in the app's folder."
    ),
)
def main(local_settings: str | None) -> None:
    """CloudScale: event ingestion and real-time analytics."""
    if local_settings is not None:
        _apply_local_settings(local_settings)


def _apply_local_settings(given: str) -> None:
    path = Path(given)
    if given == IN_SCRIPT_ROOT:  # the flag without a path: the script root's, as func's
        path = (find_script_root(Path.cwd()) or Path.cwd()) / LOCAL_SETTINGS_FILE
    try:
        outcome = apply_local_settings(read_local_settings(path), os.environ)
    except LocalSettingsError as exc:
        raise click.ClickException(str(exc)) from None
    # func's own warnings, word for word.
    for name in outcome.kept_from_environment:
        click.echo(
            f"Skipping '{name}' from local settings as it's already defined in current environment variables.", err=True
        )
    for name in outcome.null:
        click.echo(f"Skipping '{name}' because value is null", err=True)


def default_instances() -> int:
    """One instance per core this process may run on (its affinity, which container CPU limits set), at most 64.

    Off Linux, one: several instances share a port with `SO_REUSEPORT`, which spreads connections
    over the sockets only on Linux, and find each other through Linux's abstract Unix sockets.
    """
    if sys.platform != "linux":
        return 1
    return max(1, min(64, len(os.sched_getaffinity(0))))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=7071, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free).")
@click.option(
    "--log-level", default="warning", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
@click.option(
    "--bare-endpoint",
    is_flag=True,
    help="Also serve POST /_bench/bare, which answers 202 and does nothing behind the host's gateway (a look by hand).",
)
@click.option(
    "--trace-file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Append every span (the host's and the app's) to this file, one JSON object a line.",
)
@click.option(
    "--read-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds a client has to send a request's headers, and then its body, before it is cut off.",
)
@click.option(
    "--instances",
    default=lambda: default_instances(),
    show_default="the cores this process may use, at most 64 (1 off Linux)",
    type=click.IntRange(1, 64),
    help="Host processes, each a whole Functions instance of the app on the one port (as Azure scales out).",
)
@click.option(
    "--cors",
    default="*",
    show_default=True,
    help=(
        "Origins the host's CORS middleware allows, comma-separated, as `func start --cors` "
        "('*': any; '': middleware off). On Flex Consumption it always runs, with infra/'s origins."
    ),
)
def run(
    host: str,
    port: int,
    log_level: str,
    bare_endpoint: bool,
    trace_file: Path | None,
    read_timeout: float,
    instances: int,
    cors: str,
) -> None:
    """Run the whole pipeline on this machine (embedded backends, data in CLOUDSCALE_DATA_DIR)."""
    from cloudscale_local.host import HostOptions, serve
    from cloudscale_local.host.cors import CorsPolicy
    from cloudscale_local.host.http_limits import HttpLimits
    from cloudscale_local.host.instances import InstanceStartError, ListenError

    if instances > 1 and sys.platform != "linux":
        raise click.UsageError("--instances above 1 needs Linux (SO_REUSEPORT spreading, abstract Unix sockets)")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = HostOptions(
        host=host,
        port=port,
        log_level=log_level,
        bare_endpoint=bare_endpoint,
        trace_file=trace_file,
        http_limits=HttpLimits(read_timeout_seconds=read_timeout),
        instances=instances,
        cors=CorsPolicy.parse(cors),
    )
    try:
        serve(options, os.environ)
    except (
        SettingsError,
        FunctionLoadError,
        HostConfigError,
        StoreFileError,
        ListenError,
        InstanceStartError,
    ) as exc:
        raise click.ClickException(str(exc)) from None


dlq.add_command(purge)
dlq.add_command(send_poison)
main.add_command(dlq)
main.add_command(kusto_setup)
main.add_command(query)
main.add_command(report)
main.add_command(reconcile)
main.add_command(loadtest)
main.add_command(tenants)
main.add_command(keys)
main.add_command(events)
main.add_command(erase)
main.add_command(erasures)
main.add_command(suppressions)
main.add_command(export)
main.add_command(tail)
main.add_command(live)

if __name__ == "__main__":
    main()
