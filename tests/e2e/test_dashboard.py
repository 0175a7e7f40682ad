"""The dashboard in headless Chromium, against the real local host over a real socket.

GIVEN `cloudscale run` and its dashboard open, WHEN the seed's event and a bad one are posted
over HTTP, THEN both appear in the page within a second of their post (the bad one with its
reason), the good one's stored document and fraud result show on a click, the page fits a
400 px window, and a dead letter is replayed once the confirmation is accepted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from shared.adapters.event_queue.embedded_queue import EMBEDDED_QUEUE_FILE, EmbeddedQueue
from tests.e2e.browser import chromium
from tests.e2e.conftest import INGEST_ONLY, REPO, LocalHost, start_host

pytestmark = pytest.mark.e2e

T = TypeVar("T")

SEED_EVENT = {"eventType": "page_view", "correlationId": "test-1", "tenantId": "acme", "url": "/home"}
"""The README's curl body."""
BAD_EVENT = {"correlationId": "dashboard-bad-1", "tenantId": "acme", "url": "/home"}
"""No `eventType`: rejected."""
SHOWN_WITHIN_SECONDS = 1.0
SCREENSHOT = os.environ.get("CLOUDSCALE_DASHBOARD_SCREENSHOT")
"""Where `make screenshot` has the screenshot test write the README's picture."""


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    with chromium() as context:
        yield context


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    """The whole pipeline (every stage), as `make run` serves it."""
    running = start_host(tmp_path_factory.mktemp("data"))
    yield running
    running.stop()


def open_dashboard(browser: BrowserContext, host: LocalHost, width: int = 1280, height: int = 900) -> Page:
    page = browser.new_page()
    page.set_viewport_size({"width": width, "height": height})
    page.goto(f"{host.url}/dashboard")
    page.wait_for_selector("#connection.live", timeout=10_000)
    return page


@pytest.fixture
def page(browser: BrowserContext, pipeline: LocalHost) -> Iterator[Page]:
    opened = open_dashboard(browser, pipeline)
    yield opened
    opened.close()


def stored_document(page: Page) -> Locator:
    """The detail's document box once it holds the stored document (the process stage's `processedAt` in it).

    Waits go through locators: Playwright's `wait_for_function` evaluates its predicate with
    `eval` in the page, which the page's Content-Security-Policy forbids (as it should).
    """
    return page.locator("#detail-document", has_text='"processedAt"')


def seconds_left(since: float, bound: float) -> float:
    return max(bound - (time.monotonic() - since), 0.0)


def test_the_banner_prints_the_dashboard_url(pipeline: LocalHost) -> None:
    assert f"dashboard: {pipeline.url}/dashboard" in "".join(pipeline.output)


def test_the_page_loads_without_a_failed_request_or_a_console_error(
    browser: BrowserContext, pipeline: LocalHost
) -> None:
    page = browser.new_page()
    failed: list[str] = []
    page.on("console", lambda message: failed.append(message.text) if message.type == "error" else None)
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(f"{pipeline.url}/dashboard")
    page.wait_for_selector("#connection.live", timeout=10_000)
    # The icon is asked for after the load; an answer (found or not) comes before the page is closed.
    page.wait_for_load_state("networkidle")
    page.close()
    assert failed == []


def test_a_posted_event_and_a_rejected_one_show_within_a_second(page: Page, pipeline: LocalHost) -> None:
    with pipeline.client() as client:
        good_posted = time.monotonic()
        good = client.post("/api/events", json=SEED_EVENT)
        bad_posted = time.monotonic()
        bad = client.post("/api/events", json=BAD_EVENT)
    assert (good.status_code, bad.status_code) == (202, 400)
    event_id = good.json()["results"][0]["eventId"]

    # Polled until shown, bounded by a second from each post (Playwright's wait, not a sleep).
    page.wait_for_selector(
        f'.event.accepted[data-event-id="{event_id}"]', timeout=seconds_left(good_posted, SHOWN_WITHIN_SECONDS) * 1000
    )
    rejected = page.wait_for_selector(
        '.event.rejected:has-text("dashboard-bad-1")', timeout=seconds_left(bad_posted, SHOWN_WITHIN_SECONDS) * 1000
    )
    assert rejected is not None
    assert "eventType" in rejected.inner_text()  # the reason: the field it lacks


def test_clicking_an_event_shows_its_stored_document_and_fraud_result(page: Page, pipeline: LocalHost) -> None:
    with pipeline.client() as client:
        event_id = client.post("/api/events", json=SEED_EVENT).json()["results"][0]["eventId"]
    page.click(f'.event[data-event-id="{event_id}"]', timeout=5_000)
    # The process stage stores it a moment after ingest: the page looks again until it is.
    stored_document(page).filter(has_text=event_id).wait_for(timeout=15_000)
    assert page.inner_text("#detail-fraud").startswith("score ")
    assert '"fraud"' in page.inner_text("#detail-document")


def test_the_page_fits_a_narrow_window(browser: BrowserContext, pipeline: LocalHost) -> None:
    page = open_dashboard(browser, pipeline, width=400, height=800)
    try:
        with pipeline.client() as client:
            long_url = "/" + "a-very-long-path-segment-" * 12
            event_id = client.post("/api/events", json={**SEED_EVENT, "url": long_url}).json()["results"][0]["eventId"]
            client.post("/api/events", json=BAD_EVENT)
        page.click(f'.event[data-event-id="{event_id}"]', timeout=5_000)
        page.locator("#detail-document", has_text=event_id).wait_for(timeout=5_000)
        widths = page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth, document.body.scrollWidth]"
        )
        assert widths[0] <= widths[1], f"the page scrolls sideways at 400 px: {widths}"
        assert widths[2] <= widths[1], f"the body is wider than the window: {widths}"
    finally:
        page.close()


def off_the_browsers_loop(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `work()` to completion in a thread of its own: Playwright's event loop runs in this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(work())).result()


def park_one_queued_message(data_dir: Path) -> str:
    """Take the message ingest queued and park it, as the process stage parks a poison message."""

    async def park() -> str:
        queue = EmbeddedQueue(data_dir / EMBEDDED_QUEUE_FILE)
        try:
            [locked] = await queue.receive()
            await queue.park(locked.message, "SchemaInvalid", "event.url: made poison by the test")
            await queue.complete(locked.lock_token)
            return locked.message.message_id
        finally:
            queue.close()

    return off_the_browsers_loop(park)


def queued_message_ids(data_dir: Path) -> list[str]:
    async def read() -> list[str]:
        queue = EmbeddedQueue(data_dir / EMBEDDED_QUEUE_FILE)
        try:
            return [locked.message.message_id for locked in await queue.receive(10)]
        finally:
            queue.close()

    return off_the_browsers_loop(read)


def test_a_dead_letter_is_replayed_after_the_confirmation(
    browser: BrowserContext, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Ingest only: nothing consumes the queue, so the replayed message is seen back on it.
    host = start_host(tmp_path_factory.mktemp("data"), **INGEST_ONLY)
    try:
        with host.client() as client:
            assert client.post("/api/events", json=SEED_EVENT).status_code == 202
        message_id = park_one_queued_message(host.data_dir)
        page = open_dashboard(browser, host)
        # Locators, not element handles: the list is drawn again whenever the dead-letter depth moves.
        row = page.locator('.dead-letter:has-text("SchemaInvalid")')
        row.wait_for(timeout=5_000)
        assert "made poison by the test" in row.inner_text()

        page.once("dialog", lambda dialog: dialog.dismiss())
        row.locator("button.replay").click()
        assert queued_message_ids(host.data_dir) == []  # dismissed: nothing replayed

        page.once("dialog", lambda dialog: dialog.accept())
        row.locator("button.replay").click()
        page.wait_for_selector("#dead-letters-outcome:has-text('Replayed #')", timeout=5_000)
        expect(page.locator(".dead-letter")).to_have_count(0, timeout=5_000)
        assert queued_message_ids(host.data_dir) == [message_id]
        page.close()
    finally:
        host.stop()


def send_traffic(page: Page, client: httpx.Client, seconds: float, first: int = 0) -> int:
    """Post a mix of events (some rejected) for `seconds`; the number of the next one."""
    started = time.monotonic()
    number = first
    while time.monotonic() - started < seconds:
        tenant = ("acme", "globex", "initech")[number % 3]
        kind = ("page_view", "click", "purchase", "page_view")[number % 4]
        body = {**SEED_EVENT, "tenantId": tenant, "eventType": kind, "correlationId": f"order-{number}"}
        client.post("/api/events", json=body)
        if number % 5 == 0:
            client.post("/api/events", json={**BAD_EVENT, "correlationId": f"bad-{number}"})
        number += 1
        page.wait_for_timeout(150)  # paces the traffic for the charts; nothing waits on it
    return number


def test_screenshot(page: Page, pipeline: LocalHost, tmp_path: Path) -> None:
    """The README's picture (`make screenshot` writes it to docs/images/dashboard.png): some traffic,
    a dead letter (`cloudscale dlq send-poison`), one event open."""
    poison = subprocess.run(
        [sys.executable, "-m", "cloudscale_local.cli.main", "dlq", "send-poison"],
        cwd=REPO,
        env={**os.environ, "CLOUDSCALE_DATA_DIR": str(pipeline.data_dir), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert poison.returncode == 0, poison.stderr
    with pipeline.client() as client:
        sent = send_traffic(page, client, 12.0 if SCREENSHOT else 2.0)
        last = client.post("/api/events", json=SEED_EVENT).json()["results"][0]["eventId"]
        page.click(f'.event[data-event-id="{last}"]', timeout=5_000)
        stored_document(page).wait_for(timeout=15_000)
        page.locator(".dead-letter", has_text="UndecodableMessage").wait_for(timeout=10_000)
        send_traffic(page, client, 1.2, sent)  # the charts' last second with traffic in it
    target = Path(SCREENSHOT) if SCREENSHOT else tmp_path / "dashboard.png"
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000
