"""One trace per event through the running local host: the caller's request, ingest, the queue, processing.

The host writes every span to a file (`cloudscale run --trace-file`), which the tests read back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e.conftest import LocalHost, start_host
from tests.e2e.test_ingest_api import SEED_EXAMPLE, new_ip
from tests.e2e.test_process_pipeline import TRUSTED_LOOPBACK, wait_for_stored

pytestmark = pytest.mark.e2e

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"

Span = dict[str, Any]


@pytest.fixture(scope="module")
def traced_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalHost, Path]]:
    folder = tmp_path_factory.mktemp("traced")
    spans = folder / "spans.jsonl"
    host = start_host(folder / "data", "--trace-file", str(spans), **TRUSTED_LOOPBACK)
    yield host, spans
    host.stop()


def hex_id(value: str | None) -> str | None:
    return value.removeprefix("0x") if value else None


def read_spans(path: Path) -> list[Span]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def wait_for_span(path: Path, name: str, trace_id: str, timeout: float = 5.0) -> Span:
    """The span called `name` in trace `trace_id`, once the host has written it."""
    deadline = time.monotonic() + timeout
    while True:
        found = [
            span
            for span in read_spans(path)
            if span["name"] == name and hex_id(span["context"]["trace_id"]) == trace_id
        ]
        if found:
            assert len(found) == 1, found
            return found[0]
        if time.monotonic() > deadline:
            names = sorted({(span["name"], hex_id(span["context"]["trace_id"])) for span in read_spans(path)})
            pytest.fail(f"no span {name!r} in trace {trace_id} within {timeout} s; spans: {names}")
        time.sleep(0.05)


def span_id(span: Span) -> str | None:
    return hex_id(span["context"]["span_id"])


def trace_id_of(traceparent: str) -> str:
    return traceparent.split("-")[1]


def ingest(host: LocalHost, headers: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """POST the seed example with `headers`; the accepted event's id and its stored document."""
    with host.client() as client:
        response = client.post(
            "/api/events",
            content=orjson.dumps(SEED_EXAMPLE),
            headers={"Content-Type": "application/json", "X-Forwarded-For": new_ip(), **headers},
        )
        assert response.status_code == 202, response.text
        event_id = response.json()["results"][0]["eventId"]
        return event_id, wait_for_stored(client, "acme", event_id, timeout=10.0)


def test_an_event_is_one_trace_from_the_callers_request_to_its_processing(
    traced_host: tuple[LocalHost, Path],
) -> None:
    host, spans = traced_host

    event_id, stored = ingest(host, {"traceparent": CALLER_TRACEPARENT})

    # The stored event names the caller's trace.
    assert trace_id_of(stored["traceContext"]["traceparent"]) == CALLER_TRACE
    # The host's request continues the caller's span; the app's ingest runs under the host's request.
    request = wait_for_span(spans, "ingest_events", CALLER_TRACE)
    assert hex_id(request["parent_id"]) == CALLER_SPAN
    assert request["kind"] == "SpanKind.SERVER"
    ingest_span = wait_for_span(spans, "ingest events", CALLER_TRACE)
    assert hex_id(ingest_span["parent_id"]) == span_id(request)
    # Processing the event continues the trace its message was sent in.
    processing = wait_for_span(spans, "process event", CALLER_TRACE)
    assert hex_id(processing["parent_id"]) == span_id(ingest_span)
    assert processing["attributes"]["cloudscale.event_id"] == event_id
    assert processing["attributes"]["cloudscale.outcome"] == "stored"


def test_an_event_sent_without_a_traceparent_is_one_trace_from_the_hosts_request(
    traced_host: tuple[LocalHost, Path],
) -> None:
    host, spans = traced_host

    event_id, stored = ingest(host, {})

    trace_id = trace_id_of(stored["traceContext"]["traceparent"])
    request = wait_for_span(spans, "ingest_events", trace_id)
    assert request["parent_id"] is None
    assert hex_id(wait_for_span(spans, "ingest events", trace_id)["parent_id"]) == span_id(request)
    assert wait_for_span(spans, "process event", trace_id)["attributes"]["cloudscale.event_id"] == event_id


def test_the_batch_that_processed_an_event_is_linked_to_its_trace(traced_host: tuple[LocalHost, Path]) -> None:
    host, spans = traced_host
    caller_trace = "5bf92f3577b34da6a3ce929d0e0e4737"

    _, stored = ingest(host, {"traceparent": f"00-{caller_trace}-{CALLER_SPAN}-01"})

    producer = stored["traceContext"]["traceparent"].split("-")[2]
    processing = wait_for_span(spans, "process event", caller_trace)
    [invocation] = processing["links"]
    batch_trace = hex_id(invocation["context"]["trace_id"])
    assert batch_trace is not None
    assert batch_trace != caller_trace
    host_batch = wait_for_span(spans, "process_event", batch_trace)
    assert producer in {hex_id(link["context"]["span_id"]) for link in host_batch["links"]}
    assert hex_id(invocation["context"]["span_id"]) == span_id(wait_for_span(spans, "process events", batch_trace))


def test_without_a_trace_file_nothing_is_recorded_yet_the_trace_still_propagates(
    host_factory: Callable[..., LocalHost],
) -> None:
    # GIVEN a host that exports no span
    host = host_factory(**TRUSTED_LOOPBACK)

    # WHEN an event comes in under the caller's trace
    _, stored = ingest(host, {"traceparent": CALLER_TRACEPARENT})

    # THEN its processing continues that trace through a span of ours, marked as not recorded
    # (W3C sampled flag off): no span object is built for an exporter that is not there.
    version, trace_id, parent_span, flags = stored["traceContext"]["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", CALLER_TRACE, "00")
    assert parent_span not in {CALLER_SPAN, "0" * 16}
