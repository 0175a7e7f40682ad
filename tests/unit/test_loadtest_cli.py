"""`cloudscale loadtest`: the loopback rule, the help, and a run with nothing listening."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import orjson
from click.testing import CliRunner
from rich.console import Console

from cloudscale_local.cli.loadtest import print_summary
from cloudscale_local.cli.main import main
from cloudscale_local.loadtest.latency import summarize
from cloudscale_local.loadtest.report import BehindSchedule, EndToEnd, LoadReport
from tests.unit.test_loadtest_report import make_report


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_remote_url_is_refused_without_allow_remote() -> None:
    result = CliRunner().invoke(main, ["loadtest", "--url", "https://myapp.azurewebsites.net", "--duration", "1"])
    assert result.exit_code == 2
    assert "is not a loopback address" in result.output
    assert "--allow-remote" in result.output


def test_the_help_says_how_to_start_the_host() -> None:
    result = CliRunner().invoke(main, ["loadtest", "--help"])
    assert result.exit_code == 0
    assert "CLOUDSCALE_TRUSTED_PROXIES=127.0.0.1/32" in result.output
    for option in ("--duration", "--target-rps", "--batch-size", "--ips", "--url", "--tenants", "--workers"):
        assert option in result.output
    assert "--data-dir" in result.output
    assert "--json-out" in result.output


def test_an_invalid_path_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["loadtest", "--path", "api/events", "--duration", "1"])
    assert result.exit_code == 2
    assert "path must start with '/'" in result.output


def test_with_nothing_listening_it_reports_errors_and_writes_the_json(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = CliRunner().invoke(
        main,
        [
            "loadtest",
            "--url",
            f"http://127.0.0.1:{closed_port()}",
            "--duration",
            "0.5",
            "--target-rps",
            "10",
            "--json-out",
            str(out),
        ],
        env={"CLOUDSCALE_DATA_DIR": None},
    )
    assert result.exit_code == 0, result.output
    assert "no request was answered" in result.output
    report = orjson.loads(out.read_bytes())
    # On a busy machine a send can start late (the summary then also says the generator fell
    # behind) or, after a stall longer than the grace period, not at all: both are reported.
    assert report["requestsScheduled"] == 5
    sent = report["requestsSent"]
    assert sent + report["behindSchedule"]["skipped"] == 5
    assert report["statusCounts"] == {"error": sent}
    assert report["endToEnd"]["measured"] is False
    assert report["endToEnd"]["reason"] == "no data folder given"


def render(report: LoadReport) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    print_summary(report, console)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


def test_the_summary_shows_rates_answers_latencies_and_end_to_end() -> None:
    measured = EndToEnd(
        measured=True,
        tracked=4990,
        arrived=4990,
        to_stored_ms=summarize([5.0, 6.0]),
        to_analytics_ms=summarize([7.0, 8.0]),
    )
    output = render(make_report(end_to_end=measured))
    assert "500.0 requests/s" in output
    assert "4990 events (499.0 events/s)" in output
    assert "202: 4990, 429: 8, error: 2" in output
    assert "p50 2.0, p90 3.0, p99 3.0, max 3.0 ms" in output
    assert "202 -> stored" in output
    assert "p50 5.0, p99 6.0, max 6.0 ms" in output
    assert "4990 events followed, 4990 arrived, 0 never did" in output
    assert "ServerDisconnectedError: 2" in output
    assert "8 requests were rate limited (429)" in output
    assert "fell behind" not in output


def test_the_summary_says_when_the_generator_fell_behind() -> None:
    behind = make_report(
        kept_up=False,
        achieved_rps=310.0,
        status_counts={"202": 3100},
        behind_schedule=BehindSchedule(
            late_sends=2900, worst_lag_ms=812.0, threshold_ms=5.0, in_flight_cap_hits=0, skipped=1900
        ),
    )
    output = " ".join(render(behind).split())
    assert "the generator fell behind: it sent 310.0 requests/s of the 500 asked" in output
    assert "the numbers measure the generator, not the service" in output
    assert "5000 of 5000 scheduled (1900 never sent)" in output
    assert "not measured: no data folder given" in output


def test_with_nothing_answered_it_says_so_even_when_the_generator_was_late() -> None:
    # One late send of five is enough to fail the verdict on the generator; it must not hide
    # that the host never answered.
    nothing_answered = make_report(
        requests_scheduled=5,
        requests_sent=5,
        events_sent=5,
        events_accepted=0,
        accepted_events_per_second=0.0,
        status_counts={"error": 5},
        error_kinds={"ClientConnectorError": 5},
        ingest_latency_ms=summarize([]),
        kept_up=False,
        behind_schedule=BehindSchedule(
            late_sends=1, worst_lag_ms=28.7, threshold_ms=5.0, in_flight_cap_hits=0, skipped=0
        ),
    )
    output = " ".join(render(nothing_answered).split())
    assert "no request was answered: is the host running at http://127.0.0.1:7071/api/events?" in output
    assert "the generator fell behind: 1 of 5 sends started more than 5 ms late" in output
