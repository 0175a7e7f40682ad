"""What a load run does: `LoadConfig`, and the loopback check the CLI applies to its URL."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from shared.domain.events import MAX_BATCH_EVENTS

__all__ = ["MAX_IPS", "LoadConfig", "is_loopback_url"]

MAX_IPS = 2**24 - 2
"""Distinct client addresses available in 10.0.0.0/8 (10.0.0.1 to 10.255.255.254)."""


@dataclass(frozen=True)
class LoadConfig:
    """One open-loop run: `target_rps` requests per second for `duration` seconds at `url + path`.

    `batch_size` events per request (a JSON array when above 1); `ips` distinct client
    addresses sent as `X-Forwarded-For` (the host must trust the generator as a proxy);
    `tenants` tenant ids; `workers` processes sharing the rate; `data_dir` the local host's
    data folder, for the end-to-end latencies (None: not measured), which waits up to
    `drain_seconds` for the accepted events to reach analytics. `write_key`: sent as
    `Authorization: Bearer` on every request, whose events then carry no `tenantId` (the key's
    tenant is filled in); None sends none (the embedded host's open mode).
    """

    url: str = "http://127.0.0.1:7071"
    duration: float = 60
    target_rps: float = 1000
    batch_size: int = 1
    ips: int = 256
    tenants: int = 10
    path: str = "/api/events"
    workers: int = 1
    data_dir: Path | None = None
    drain_seconds: float = 30
    write_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        scheme_and_host = urlsplit(self.url)
        checks = [
            (_positive(self.duration), f"duration must be a positive number of seconds, not {self.duration}"),
            (_positive(self.target_rps), f"target_rps must be a positive number, not {self.target_rps}"),
            (
                1 <= self.batch_size <= MAX_BATCH_EVENTS,
                f"batch_size must be in 1..{MAX_BATCH_EVENTS}, not {self.batch_size}",
            ),
            (1 <= self.ips <= MAX_IPS, f"ips must be in 1..{MAX_IPS}, not {self.ips}"),
            (self.tenants >= 1, f"tenants must be at least 1, not {self.tenants}"),
            (self.workers >= 1, f"workers must be at least 1, not {self.workers}"),
            (
                self.drain_seconds == 0 or _positive(self.drain_seconds),
                f"drain_seconds must be zero or more, not {self.drain_seconds}",
            ),
            (self.path.startswith("/"), f"path must start with '/', not {self.path!r}"),
            (
                scheme_and_host.scheme in ("http", "https") and bool(scheme_and_host.hostname),
                f"url must be an http(s) URL with a host, not {self.url!r}",
            ),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def endpoint(self) -> str:
        """The URL every request is sent to."""
        return self.url.rstrip("/") + self.path


def _positive(value: float) -> bool:
    return value > 0 and math.isfinite(value)


def is_loopback_url(url: str) -> bool:
    """True when `url`'s host is `localhost` or a loopback address (127.0.0.0/8, ::1).

    Names other than `localhost` are not resolved: a name can point anywhere, so it counts
    as remote.
    """
    host = urlsplit(url).hostname
    if host is None:
        return False
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
