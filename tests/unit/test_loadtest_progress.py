"""Live progress: worker snapshots merged, and the line on a terminal or in a log."""

from __future__ import annotations

import io

import pytest

from cloudscale_local.loadtest.progress import Progress, ProgressAggregator, ProgressPrinter
from cloudscale_local.loadtest.worker import WorkerSnapshot


def progress(**overrides: object) -> Progress:
    fields: dict[str, object] = {
        "phase": "sending",
        "elapsed": 2.0,
        "sent": 200,
        "achieved_rps": 100.0,
        "ok": 190,
        "rate_limited": 5,
        "server_errors": 3,
        "errors": 2,
        "other": 0,
        "in_flight": 4,
        "p99_ms": 12.34,
    }
    fields.update(overrides)
    return Progress(**fields)  # type: ignore[arg-type]


def test_the_line_shows_rate_answers_and_p99() -> None:
    line = progress().line()
    assert line == "   2.0s sent 200 (100/s) | 2xx 190 429 5 5xx 3 err 2 | in flight 4 | p99 12.3 ms"
    assert "p99 -" in progress(p99_ms=None).line()
    assert "other 7" in progress(other=7).line()
    assert progress(phase="analytics", e2e_found=10, e2e_expected=20).line().endswith("| in analytics 10/20")


def test_snapshots_of_several_workers_add_up() -> None:
    shown: list[Progress] = []
    aggregator = ProgressAggregator(shown.append, workers=2, interval=0)
    aggregator.update(WorkerSnapshot(0, 100, {"202": 90, "429": 5, "error": 1}, [1.0] * 96, in_flight=4, elapsed=1.0))
    assert shown == []  # not until both workers have said something
    aggregator.update(WorkerSnapshot(1, 50, {"202": 40, "503": 2, "404": 1}, [2.0] * 43, in_flight=7, elapsed=0.5))
    # A later snapshot of worker 0 replaces its earlier counts; latencies only ever add.
    aggregator.update(
        WorkerSnapshot(0, 200, {"202": 190, "429": 5, "error": 1}, [50.0] * 100, in_flight=4, elapsed=2.0)
    )
    last = shown[-1]
    assert (last.sent, last.ok, last.rate_limited, last.server_errors, last.errors, last.other) == (
        250,
        230,
        5,
        2,
        1,
        1,
    )
    assert last.in_flight == 11
    assert last.achieved_rps == pytest.approx(200 / 2.0 + 50 / 0.5)
    assert last.p99_ms == pytest.approx(50.0, rel=0.011)


def test_without_a_callback_nothing_is_emitted() -> None:
    aggregator = ProgressAggregator(None, interval=0)
    aggregator.update(WorkerSnapshot(0, 1, {"202": 1}, [1.0], in_flight=0, elapsed=1.0))
    aggregator.emit("analytics", e2e_found=0, e2e_expected=1)
    assert aggregator.current().sent == 1


def test_emission_is_throttled_to_the_interval() -> None:
    shown: list[Progress] = []
    aggregator = ProgressAggregator(shown.append, interval=3600)
    for n in range(5):
        aggregator.update(WorkerSnapshot(0, n, {}, [], in_flight=0, elapsed=1.0))
    assert len(shown) == 1


def test_on_a_terminal_the_line_is_rewritten_in_place() -> None:
    stream = io.StringIO()
    printer = ProgressPrinter(stream, is_tty=True)
    printer(progress(sent=1))
    printer(progress(sent=2))
    printer.close()
    text = stream.getvalue()
    assert text.count("\r") == 2
    assert text.endswith("\x1b[K\n")
    assert text.count("\n") == 1


def test_in_a_log_one_line_is_written_per_interval_and_the_last_at_the_end() -> None:
    stream = io.StringIO()
    printer = ProgressPrinter(stream, is_tty=False, every=3600)
    for sent in range(1, 6):
        printer(progress(sent=sent))
    printer.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "sent 1 " in lines[0]
    assert "sent 5 " in lines[1]
    assert "\r" not in stream.getvalue()


def test_in_a_log_the_last_line_is_flushed_before_the_caller_prints_more() -> None:
    # A text stream that is not line-buffered: nothing reaches the file until a flush.
    file = io.BytesIO()
    stream = io.TextIOWrapper(file, encoding="utf-8")
    printer = ProgressPrinter(stream, is_tty=False, every=3600)
    printer(progress(sent=1))
    printer(progress(sent=5))
    printer.close()
    lines = file.getvalue().decode().splitlines()
    assert len(lines) == 2
    assert "sent 5 " in lines[1]


def test_in_a_log_the_last_line_is_not_repeated_when_nothing_changed() -> None:
    stream = io.StringIO()
    printer = ProgressPrinter(stream, is_tty=False, every=3600)
    printer(progress(sent=5))
    printer(progress(sent=5))
    printer.close()
    assert len(stream.getvalue().splitlines()) == 1
