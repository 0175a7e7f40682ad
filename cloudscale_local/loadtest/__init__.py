"""`cloudscale loadtest` as a library: an open-loop, constant-arrival-rate load generator.

    from cloudscale_local.loadtest import LoadConfig, run_load
    report = run_load(LoadConfig(duration=10, target_rps=500))
    print(report.to_dict())

Request i is sent at start + i / rate whether or not earlier requests have been answered
(open loop), so a slow service shows up as latency and errors, not as a lower send rate.
The report says whether the generator itself kept up (`kept_up`).
"""

from cloudscale_local.loadtest.config import LoadConfig, is_loopback_url
from cloudscale_local.loadtest.generator import run_load
from cloudscale_local.loadtest.latency import LatencySummary
from cloudscale_local.loadtest.progress import Progress, ProgressPrinter
from cloudscale_local.loadtest.report import BehindSchedule, EndToEnd, LoadReport

__all__ = [
    "BehindSchedule",
    "EndToEnd",
    "LatencySummary",
    "LoadConfig",
    "LoadReport",
    "Progress",
    "ProgressPrinter",
    "is_loopback_url",
    "run_load",
]
