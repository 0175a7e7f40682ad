"""wrk's `--latency` output, and the events script's summary line, read back into numbers."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from cloudscale_local.bench.wrk import main, parse_output
from shared.domain.events import Event

# wrk 4.1.0 with cloudscale_local/bench/wrk_events.lua against the bare ASGI app.
CLEAN = """\
Running 1s test @ http://127.0.0.1:40787/api/events
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.10ms    2.52ms  17.63ms   70.80%
    Req/Sec     9.83k     2.35k   13.46k    50.00%
  Latency Distribution
     50%    5.69ms
     75%    7.55ms
     90%    9.42ms
     99%   13.49ms
  9809 requests in 1.01s, 1.08MB read
Requests/sec:   9736.21
Transfer/sec:      1.07MB
CLOUDSCALE_WRK {"statuses":{"202":9809},"acceptedEvents":9809,"requests":9809,"durationUs":1007476,\
"errors":{"connect":0,"read":0,"write":0,"status":0,"timeout":0},\
"latencyUs":{"p50":5688,"p90":9423,"p99":13489,"p999":17186,"max":17626}}
"""

# An overloaded server: microsecond and second units, socket errors, refusals.
TROUBLED = """\
Running 1m test @ http://127.0.0.1:7071/api/events
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20s   300.00ms   2.00s    80.00%
    Req/Sec   500.00    100.00     1.00k    70.00%
  Latency Distribution
     50%  850.00us
     75%    1.10s
     90%    1.50s
     99%    1.90s
  30000 requests in 1.00m, 9.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 12
  Non-2xx or 3xx responses: 1000
Requests/sec:    499.50
Transfer/sec:    153.60KB
CLOUDSCALE_WRK {"statuses":{"429":900,"202":29000,"503":100},"acceptedEvents":29000,"requests":30000,\
"durationUs":60000000,"errors":{"connect":0,"read":3,"write":0,"status":1000,"timeout":12},\
"latencyUs":{"p50":850,"p90":1500000,"p99":1900000,"p999":2000000,"max":2000000}}
"""


def test_a_clean_run_reads_rate_latency_and_statuses() -> None:
    # WHEN a clean run's output is parsed
    result = parse_output(CLEAN)

    # THEN every number comes back in requests, seconds and milliseconds
    assert result.requests == 9809
    assert result.duration_seconds == 1.01
    assert result.requests_per_second == 9736.21
    assert result.latency_ms == {"50": 5.69, "75": 7.55, "90": 9.42, "99": 13.49}
    assert result.socket_errors == {}
    assert result.non_2xx == 0
    assert result.statuses == {"202": 9809}
    assert result.accepted_events == 9809
    assert result.errors == {}
    assert result.accepted_events_per_second == pytest.approx(9809 / 1.01)


def test_units_socket_errors_and_refusals_are_read() -> None:
    result = parse_output(TROUBLED)

    assert result.duration_seconds == 60.0
    assert result.latency_ms == {"50": 0.85, "75": 1100.0, "90": 1500.0, "99": 1900.0}
    assert result.socket_errors == {"connect": 0, "read": 3, "write": 0, "timeout": 12}
    assert result.non_2xx == 1000
    assert result.statuses == {"202": 29000, "429": 900, "503": 100}
    # 429 is the intended refusal; 503 and socket errors are errors.
    assert result.errors == {"503": 100, "socket read": 3, "socket timeout": 12}


def test_output_without_the_script_line_still_parses() -> None:
    plain = "\n".join(line for line in CLEAN.splitlines() if not line.startswith("CLOUDSCALE_WRK"))

    result = parse_output(plain)

    assert result.requests == 9809
    assert result.statuses == {}
    assert result.accepted_events == 0


def test_text_that_is_not_wrk_output_is_refused() -> None:
    with pytest.raises(ValueError, match="not wrk output"):
        parse_output("wrk: command not found\n")


def test_the_by_hand_helper_writes_templates_and_prints_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    templates = tmp_path / "events.jsonl"

    assert main([str(templates), "--duration", "30"]) == 0

    lines = templates.read_bytes().splitlines()
    # Each line becomes a valid event once the script splices an id in front of it.
    for line in lines:
        event = orjson.loads(b'{"eventId":"12345678-1234-1234-1234-123456789abc",' + line[1:])
        Event.model_validate(event)
    command = capsys.readouterr().out.split()
    assert command[:5] == ["wrk", "-t1", "-c64", "-d30s", "--latency"]
    assert command[-4:-1] == [str(templates), "25000", "1"]
    assert len(command[-1]) == 23
