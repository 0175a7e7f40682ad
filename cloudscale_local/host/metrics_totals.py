"""`/metrics` totals across the instances of one `cloudscale run`.

Each instance keeps its own OpenTelemetry instruments, as each Functions host instance does
(Application Insights sums them over `cloud_RoleInstance`). So that `/metrics`, answered by
whichever instance accepts the connection, shows the run's totals, every instance writes its
own Prometheus text to a snapshot file in the run's folder, every `SNAPSHOT_SECONDS`, at each
scrape it answers and at shutdown, replaced atomically; a scrape merges the answering
instance's live reading with the other instances' snapshots:

- counters, histograms and summaries are summed, series by series;
- gauges are the answering instance's own reading: the queue depths read the shared queue,
  so every instance reads the same depth and a sum would multiply it (the app has no
  per-instance gauge; the `process_*`/`python_*` gauges describe the answering process).

A killed instance's last snapshot stays in the folder, so its counts never leave the totals
and no counter goes backwards (an instance writes the reading it answers with before
answering); what it counted in its last `SNAPSHOT_SECONDS` before being killed is missing.
The folder belongs to the run: a new `cloudscale run` starts from zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["SNAPSHOT_SECONDS", "MetricsSnapshots", "SnapshotWriter", "merge_exposition", "new_run_folder"]

logger = logging.getLogger(__name__)

SNAPSHOT_SECONDS = 1.0
"""How often each instance writes its snapshot: the staleness bound of other instances' counts."""
_SUMMED = frozenset({"counter", "histogram", "summary", "gaugehistogram", "unknown", "untyped"})
_RUN_LOCK = ".run.lock"
_RUN_PREFIX = "metrics-"

SeriesKey = tuple[tuple[str, str], ...]
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


class MetricsSnapshots:
    """The snapshot files of one run's instances; this instance's is `<name>.prom`."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.path = folder / f"{name}.prom"

    def write(self, exposition: bytes) -> None:
        """Replace this instance's snapshot: a reader sees the old one or the new one, whole."""
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_bytes(exposition)
        os.replace(temporary, self.path)

    def read_others(self) -> list[bytes]:
        """The other instances' latest snapshots (a file that vanished or cannot be read is left out)."""
        found: list[bytes] = []
        for path in sorted(self.folder.glob("*.prom")):
            if path != self.path:
                with contextlib.suppress(OSError):
                    found.append(path.read_bytes())
        return found


class SnapshotWriter:
    """Writes `read()` to the snapshots every `SNAPSHOT_SECONDS` until stopped, and once more at the stop."""

    def __init__(self, snapshots: MetricsSnapshots, read: Callable[[], bytes]) -> None:
        self._snapshots = snapshots
        self._read = read
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="metrics-snapshots")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        await self._write()

    async def _run(self) -> None:
        while not self._stop.is_set():
            await self._write()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=SNAPSHOT_SECONDS)

    async def _write(self) -> None:
        try:
            await asyncio.to_thread(lambda: self._snapshots.write(self._read()))
        except OSError:
            logger.warning("could not write this instance's metrics snapshot", exc_info=True)


def merge_exposition(own: bytes, others: Iterable[bytes]) -> bytes:
    """Prometheus text: `own` with the counters, histograms and summaries of `others` added in."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[SeriesKey, dict[SampleKey, float]]] = {}
    for index, text in enumerate([own, *others]):
        for family in text_string_to_metric_families(text.decode("utf-8")):
            if index > 0 and family.type not in _SUMMED:
                continue
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                values[family.name] = {}
            series_of = values[family.name]
            for sample in family.samples:
                if index > 0 and sample.name.endswith("_created"):
                    continue  # a start time, not an amount: the answering instance's stands
                series = tuple(sorted((k, v) for k, v in sample.labels.items() if k not in ("le", "quantile")))
                key = (sample.name, tuple(sorted(sample.labels.items())))
                samples = series_of.setdefault(series, {})
                samples[key] = samples.get(key, 0.0) + sample.value
    registry = CollectorRegistry(auto_describe=False)
    for name, metric in families.items():
        for samples in values[name].values():
            for (sample_name, labels), value in samples.items():
                metric.add_sample(sample_name, dict(labels), value)
    registry.register(_Fixed(list(families.values())))
    return generate_latest(registry)


class _Fixed:
    """A collector that yields metrics already built."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def new_run_folder(instances_dir: Path) -> tuple[Path, int]:
    """A fresh folder for a run's snapshots, and the descriptor of the lock that marks it live.

    The supervisor holds an exclusive `flock` on the folder's lock file for as long as it runs;
    folders of earlier runs whose lock is free (their supervisor ended, however it ended) are
    removed first, so a new run starts from zero and a run beside it on the same data folder
    keeps its own.
    """
    instances_dir.mkdir(parents=True, exist_ok=True)
    for folder in instances_dir.glob(f"{_RUN_PREFIX}*"):
        descriptor = _try_lock(folder / _RUN_LOCK)
        if descriptor is not None:
            shutil.rmtree(folder, ignore_errors=True)
            os.close(descriptor)
    folder = instances_dir / f"{_RUN_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    folder.mkdir()
    descriptor = _try_lock(folder / _RUN_LOCK)
    if descriptor is None:  # pragma: no cover - a folder named for this process is nobody else's
        raise OSError(f"could not lock {folder}")
    return folder, descriptor


def _try_lock(path: Path) -> int | None:
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor
