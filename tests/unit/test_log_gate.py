"""The terminal under load: invocation lines rate-limited into summaries, repeated warnings collapsed."""

from __future__ import annotations

import io
import logging
import threading

import pytest

from cloudscale_local.host.invocation_lines import InvocationLine
from cloudscale_local.host.log_gate import GatedHandler, InvocationRateLimit, RepeatCollapse


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def invocation(function: str = "ingest_events", status: int | None = 202, succeeded: bool = True) -> logging.LogRecord:
    line = InvocationLine(function, "id-1", succeeded, 3, request="POST /api/events" if status else None, status=status)
    record = logging.LogRecord(f"Function.{function}", logging.INFO, __file__, 1, "%s", (line.text(),), None)
    record.invocation = line
    return record


def warning(
    message: str = "suspicious event %s tenant=%s", *args: object, name: str = "cloudscale.security"
) -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, message, args or ("e1", "acme"), None)


def test_up_to_the_limit_every_line_passes_then_one_summary_counts_the_rest_by_kind() -> None:
    # GIVEN a limit of 20 lines a second
    limit = InvocationRateLimit(per_second=20)
    written = []
    # WHEN 1,234 ingest invocations and 34 process invocations come within one second
    for n in range(1234):
        written += limit.admit(invocation(), 1000.0 + n / 2000)
    for _ in range(34):
        written += limit.admit(invocation("process_event", status=None), 1000.5)
    # THEN 20 are written, and nothing else until the second is over
    assert len(written) == 20
    assert limit.due(1000.99) == []
    # AND then one summary line names how many were left out, by kind, most first
    (summary,) = limit.due(1001.0)
    assert summary.getMessage() == (
        "… 1,248 more invocations in the last 1 s: ingest_events 202 \N{MULTIPLICATION SIGN}1,214, "
        "process_event Succeeded \N{MULTIPLICATION SIGN}34"
    )
    assert summary.levelno == logging.INFO


def test_a_new_window_starts_after_the_summary_and_a_quiet_window_has_none() -> None:
    limit = InvocationRateLimit(per_second=2)
    assert len(limit.admit(invocation(), 0.0) + limit.admit(invocation(), 0.1) + limit.admit(invocation(), 0.2)) == 2
    # The next line, a second later, brings the summary first, then passes itself.
    out = limit.admit(invocation(status=500), 1.5)
    assert out[0].getMessage().startswith("… 1 more invocation in the last 1 s")
    assert out[1].invocation.status == 500  # type: ignore[attr-defined]
    assert limit.due(3.0) == []


def test_failed_lines_are_counted_as_failed() -> None:
    limit = InvocationRateLimit(per_second=0)
    limit.admit(invocation(succeeded=False), 0.0)
    limit.admit(invocation("process_event", status=None, succeeded=False), 0.0)
    (summary,) = limit.due(1.0)
    assert "ingest_events Failed \N{MULTIPLICATION SIGN}1" in summary.getMessage()
    assert "process_event Failed \N{MULTIPLICATION SIGN}1" in summary.getMessage()


def test_the_first_few_warnings_of_a_kind_pass_then_the_rest_are_summed_up_after_the_window() -> None:
    collapse = RepeatCollapse(burst=3, window_seconds=10.0)
    written = []
    for n in range(60):
        written += collapse.admit(warning("suspicious event %s tenant=%s", f"e{n}", "acme"), 100.0 + n / 10)
    # Another message is a kind of its own: it passes.
    written += collapse.admit(warning("queue unavailable, %d events refused", 3, name="ingest.service"), 101.0)
    assert [record.getMessage() for record in written] == [
        "suspicious event e0 tenant=acme",
        "suspicious event e1 tenant=acme",
        "suspicious event e2 tenant=acme",
        "queue unavailable, 3 events refused",
    ]
    assert collapse.due(109.9) == []
    (summary,) = collapse.due(110.0)
    assert summary.getMessage() == "… 57 more like 'suspicious event %s tenant=%s' in the last 10 s"
    assert summary.levelno == logging.WARNING
    assert summary.name == "cloudscale.security"
    # The window is over: the kind starts again.
    assert len(collapse.admit(warning(), 111.0)) == 1


def test_kinds_beyond_the_bound_are_written_not_hidden() -> None:
    collapse = RepeatCollapse(burst=1, max_kinds=2)
    for n in range(5):
        assert len(collapse.admit(warning(f"message {n}"), 0.0)) == 1
        assert len(collapse.admit(warning(f"message {n}"), 0.0)) == (0 if n < 2 else 1)


def test_the_handler_writes_the_summaries_of_ended_windows_when_flushed() -> None:
    # GIVEN a handler with an injected clock and no flushing thread
    clock = FakeClock()
    stream = io.StringIO()
    handler = GatedHandler(stream, rate_limit=InvocationRateLimit(per_second=5), clock=clock, flush_every_seconds=None)
    handler.setFormatter(logging.Formatter("%(message)s"))
    # WHEN a burst of 300 invocation lines, 20 warnings of one kind and an INFO line go through it
    for _ in range(300):
        handler.handle(invocation())
    for n in range(20):
        handler.handle(warning("suspicious event %s tenant=%s", f"e{n}", "acme"))
    info = logging.LogRecord("process", logging.INFO, __file__, 1, "started", None, None)
    handler.handle(info)
    assert len(stream.getvalue().splitlines()) == 5 + 3 + 1
    # THEN a second later one summary for the invocations, ten seconds later one for the warnings
    clock.now += 1
    handler.flush_due()
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("… 295 more invocations in the last 1 s: ingest_events 202")
    clock.now += 10
    handler.flush_due()
    assert stream.getvalue().splitlines()[-1] == "… 17 more like 'suspicious event %s tenant=%s' in the last 10 s"
    handler.close()


def test_the_line_says_what_func_start_says_then_what_the_trigger_adds() -> None:
    line = InvocationLine(
        "ingest_events",
        "0b6f",
        True,
        4,
        details={"tenant": "acme", "accepted": 1, "rejected": 0},
        request="POST /api/events",
        status=202,
    )
    assert line.text() == (
        "Executed 'Functions.ingest_events' (Succeeded, Id=0b6f, Duration=4ms) "
        "POST /api/events 202 tenant=acme accepted=1 rejected=0"
    )
    failed = InvocationLine("process_event", "9a", False, 12, details={"messages": 100})
    assert failed.text() == "Executed 'Functions.process_event' (Failed, Id=9a, Duration=12ms) messages=100"


def test_closing_the_handler_writes_what_it_left_out_of_windows_not_yet_ended() -> None:
    # GIVEN a handler that left out invocation lines and warnings in windows still running
    clock = FakeClock()
    stream = io.StringIO()
    handler = GatedHandler(stream, rate_limit=InvocationRateLimit(per_second=5), clock=clock, flush_every_seconds=None)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for _ in range(50):
        handler.handle(invocation())
    for n in range(8):
        handler.handle(warning("suspicious event %s tenant=%s", f"e{n}", "acme"))
    # WHEN the host stops at once (logging.shutdown closes the handler)
    handler.close()
    # THEN the last lines still say how many were left out
    lines = stream.getvalue().splitlines()
    assert any(line.startswith("… 45 more invocations") for line in lines)
    assert "… 5 more like 'suspicious event %s tenant=%s' in the last 10 s" in lines


def test_closing_twice_raises_nothing_and_the_summary_thread_ends_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    # logging.shutdown closes every handler ever made, one that configure_logging replaced included.
    failures: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", failures.append)
    handler = GatedHandler(io.StringIO(), flush_every_seconds=0.01)
    flusher = handler.flusher
    assert flusher is not None
    handler.close()
    handler.close()
    flusher.join(timeout=10)
    assert not flusher.is_alive()
    assert failures == []


def test_a_record_the_gate_cannot_read_never_raises_into_the_code_that_logged_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A logging call never fails its caller (`Handler.handleError`): an ingest request logging a
    # warning must not turn into a 500 because the gate could not read the record.
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    handled: list[logging.LogRecord] = []
    handler = GatedHandler(io.StringIO(), flush_every_seconds=None)
    monkeypatch.setattr(handler, "handleError", handled.append)
    record = logging.LogRecord("ingest", logging.WARNING, __file__, 1, Unprintable(), None, None)
    handler.handle(record)
    assert handled == [record]
    handler.close()
