"""The traffic: a realistic mix of events, serialised ahead of time, and the client addresses.

Building and serialising a dict per request would cost the generator more CPU than sending
it, and the generator's CPU is what limits how fast it can go. So a pool of event templates
(everything but `eventId` and `timestamp`) is built and serialised once with orjson, and a
request only splices a fresh UUID and the current time into the front of a template's
bytes. Every template is a valid `shared.domain.events.Event` (the unit tests check each
one against the real model).

The mix, per event: `page_view` 60%, `click` 25%, `purchase` 8% (amount, currency, items),
`error` 7% (message, code, a stack); tenants `tenant-0..N-1` with a skew (tenant-0 busiest,
as in real multi-tenant traffic); a user and session pool; 15% of events anonymous.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from shared.domain.events import MAX_BATCH_EVENTS, MAX_BODY_BYTES

__all__ = ["EVENT_WEIGHTS", "BodyFactory", "build_templates", "client_ips", "rfc3339_millis"]

EVENT_WEIGHTS: dict[str, int] = {"page_view": 60, "click": 25, "purchase": 8, "error": 7}
"""Relative frequency of each event type."""

TEMPLATE_POOL = 2048
"""Distinct event templates; requests cycle through them."""

USERS = 5000
SESSIONS_PER_USER = 3
ANONYMOUS_SHARE = 0.15

_SITE = "https://shop.example.com"
_PAGES = ("/", "/home", "/cart", "/checkout", "/account", "/search", "/deals", "/help/shipping", "/help/returns")
_CATEGORIES = ("shoes", "jackets", "bags", "watches", "electronics", "books", "garden", "toys")
_TITLES = ("Home", "Cart", "Checkout", "Your account", "Search results", "Today's deals", "Shipping", "Returns")
_REFERRERS = (None, "https://www.google.com/", "https://www.bing.com/", "https://news.example.org/", _SITE + "/")
_CLICK_TARGETS = (
    ("button#add-to-cart", "Add to cart"),
    ("a.nav-link", "Deals"),
    ("button.buy-now", "Buy now"),
    ("a.product-card", "View product"),
    ("button#search", "Search"),
    ("a.footer-link", "Contact us"),
)
_CURRENCIES = ("EUR", "USD", "GBP", "SEK")
_PAYMENT_METHODS = ("card", "paypal", "apple_pay", "invoice")
_ERRORS = (
    ("E_TIMEOUT", "Request to /api/cart timed out after 10000 ms"),
    ("E_NETWORK", "Failed to fetch: NetworkError when attempting to fetch resource."),
    ("E_RENDER", "TypeError: Cannot read properties of undefined (reading 'price')"),
    ("E_PAYMENT", "Payment provider declined the authorisation: insufficient funds"),
)
_STACK_FRAMES = (
    "at renderProduct (https://shop.example.com/static/app.4f1c.js:1:10423)",
    "at Array.map (<anonymous>)",
    "at ProductList (https://shop.example.com/static/app.4f1c.js:1:11877)",
    "at updateComponent (https://shop.example.com/static/vendor.9a2e.js:2:88112)",
    "at flushWork (https://shop.example.com/static/vendor.9a2e.js:2:90341)",
    "at MessagePort.performWork (https://shop.example.com/static/vendor.9a2e.js:2:90807)",
)
_USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
    "Safari/537.36 Edg/126.0.0.0",
)
# Room for the spliced `"eventId":"<36>","timestamp":"<24>",` and the batch's commas.
_SPLICE_BYTES = 64


def client_ips(count: int) -> list[str]:
    """`count` distinct private addresses, 10.0.0.1, 10.0.0.2, ... (at most 2**24 - 2)."""
    if not 1 <= count <= 2**24 - 2:
        raise ValueError(f"the number of client addresses must be in 1..{2**24 - 2}, not {count}")
    return [f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in range(1, count + 1)]


def build_templates(tenants: int, *, seed: int = 0, pool: int = TEMPLATE_POOL) -> list[dict[str, Any]]:
    """`pool` events of the mix (no `eventId`, no `timestamp`), the same for the same seed."""
    if tenants < 1:
        raise ValueError(f"there must be at least one tenant, not {tenants}")
    rng = random.Random(seed)
    tenant_ids = [f"tenant-{n}" for n in range(tenants)]
    # Zipf-like: tenant k gets weight 1/(k+1).
    tenant_weights = [1 / (n + 1) for n in range(tenants)]
    types = list(EVENT_WEIGHTS)
    type_weights = list(EVENT_WEIGHTS.values())
    builders = {"page_view": _page_view, "click": _click, "purchase": _purchase, "error": _error}
    templates = []
    for n in range(pool):
        event_type = rng.choices(types, type_weights)[0]
        event: dict[str, Any] = {"eventType": event_type, "tenantId": rng.choices(tenant_ids, tenant_weights)[0]}
        if rng.random() >= ANONYMOUS_SHARE:
            user = rng.randrange(USERS)
            event["userId"] = f"user-{user:05d}"
            event["sessionId"] = f"sess-{user:05d}-{rng.randrange(SESSIONS_PER_USER)}"
        event["correlationId"] = f"loadtest-{seed}-{n}"
        event.update(builders[event_type](rng))
        templates.append(event)
    return templates


def rfc3339_millis(wall: float) -> str:
    """`wall` (Unix seconds) as RFC 3339 UTC with milliseconds, e.g. 2026-01-31T12:00:00.123Z."""
    seconds = int(wall)
    millis = min(999, int((wall - seconds) * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class BodyFactory:
    """Request bodies and headers for request i: fresh event ids, the current time, client i % ips."""

    def __init__(self, *, tenants: int, batch_size: int, ips: int, seed: int = 0, write_key: str | None = None) -> None:
        """`write_key`: sent as `Authorization: Bearer` with every request; the events then name no
        tenant, since the key's tenant is filled in (and another one would be rejected)."""
        if not 1 <= batch_size <= MAX_BATCH_EVENTS:
            raise ValueError(f"the batch size must be in 1..{MAX_BATCH_EVENTS}, not {batch_size}")
        self.batch_size = batch_size
        templates = build_templates(tenants, seed=seed)
        if write_key is not None:
            templates = [{name: value for name, value in event.items() if name != "tenantId"} for event in templates]
        self._templates = [orjson.dumps(event) for event in templates]
        authorization = {"Authorization": f"Bearer {write_key}"} if write_key is not None else {}
        largest = max(len(template) for template in self._templates)
        if batch_size * (largest + _SPLICE_BYTES) > MAX_BODY_BYTES:  # pragma: no cover - the mix is small
            raise ValueError(f"a batch of {batch_size} events could exceed the {MAX_BODY_BYTES} byte body limit")
        # One header dict per client, built once; a client keeps its browser, as a device would.
        self._headers = [
            {
                "Content-Type": "application/json",
                "X-Forwarded-For": ip,
                "User-Agent": _USER_AGENTS[n % len(_USER_AGENTS)],
                **authorization,
            }
            for n, ip in enumerate(client_ips(ips))
        ]
        self._second = -1
        self._second_text = ""

    def headers(self, index: int) -> dict[str, str]:
        """The headers of request `index`: its client address cycles through the pool."""
        return self._headers[index % len(self._headers)]

    def body(self, index: int, wall: float) -> tuple[bytes, list[str]]:
        """The body of request `index` sent at `wall` (Unix seconds), and the event ids in it."""
        stamp = self._timestamp(wall)
        ids = [str(uuid.uuid4()) for _ in range(self.batch_size)]
        templates = self._templates
        first = index * self.batch_size
        # `{"eventType":...}` becomes `{"eventId":"...","timestamp":"...","eventType":...}`.
        events = [
            b'{"eventId":"%s","timestamp":"%s",%s'
            % (event_id.encode(), stamp, templates[(first + k) % len(templates)][1:])
            for k, event_id in enumerate(ids)
        ]
        body = events[0] if self.batch_size == 1 else b"[" + b",".join(events) + b"]"
        return body, ids

    def _timestamp(self, wall: float) -> bytes:
        # strftime once a second; the milliseconds are appended per call.
        seconds = int(wall)
        if seconds != self._second:
            self._second = seconds
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        millis = min(999, int((wall - seconds) * 1000))
        return f"{self._second_text}.{millis:03d}Z".encode()


def _pick(rng: random.Random, options: Sequence[Any]) -> Any:
    return options[rng.randrange(len(options))]


def _page_view(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.4:
        sku = f"{_pick(rng, _CATEGORIES)}-{rng.randrange(10_000):04d}"
        url, title = f"{_SITE}/products/{sku}", f"Product {sku}"
    else:
        page = _pick(rng, _PAGES)
        url, title = f"{_SITE}{page}", _pick(rng, _TITLES)
        if page == "/search":
            url += f"?q={_pick(rng, _CATEGORIES)}&page={rng.randrange(1, 5)}"
    properties: dict[str, Any] = {
        "title": title,
        "loadTimeMs": rng.randrange(80, 2500),
        "viewport": {"width": _pick(rng, (390, 412, 768, 1280, 1440, 1920)), "height": rng.randrange(640, 1200)},
    }
    referrer = _pick(rng, _REFERRERS)
    if referrer:
        properties["referrer"] = referrer
    return {"url": url, "properties": properties}


def _click(rng: random.Random) -> dict[str, Any]:
    selector, text = _pick(rng, _CLICK_TARGETS)
    return {
        "url": f"{_SITE}{_pick(rng, _PAGES)}",
        "properties": {"element": selector, "text": text, "x": rng.randrange(1920), "y": rng.randrange(1200)},
    }


def _purchase(rng: random.Random) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    amount = 0.0
    for _ in range(rng.randrange(1, 6)):
        price, quantity = round(rng.uniform(4.99, 249.0), 2), rng.randrange(1, 4)
        amount += price * quantity
        items.append(
            {"sku": f"{_pick(rng, _CATEGORIES)}-{rng.randrange(10_000):04d}", "quantity": quantity, "price": price}
        )
    return {
        "url": f"{_SITE}/checkout/complete",
        "properties": {
            "orderId": f"ord-{rng.getrandbits(48):012x}",
            "amount": round(amount, 2),
            "currency": _pick(rng, _CURRENCIES),
            "paymentMethod": _pick(rng, _PAYMENT_METHODS),
            "items": items,
        },
    }


def _error(rng: random.Random) -> dict[str, Any]:
    code, message = _pick(rng, _ERRORS)
    frames = rng.sample(_STACK_FRAMES, rng.randrange(2, len(_STACK_FRAMES) + 1))
    return {
        "url": f"{_SITE}{_pick(rng, _PAGES)}",
        "properties": {
            "message": message,
            "code": code,
            "severity": _pick(rng, ("warning", "error", "error", "fatal")),
            "stack": "\n    ".join([message, *frames]),
        },
    }
