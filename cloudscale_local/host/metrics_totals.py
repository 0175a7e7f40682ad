"""`/metrics` totals across the instances of one `cloudscale run`.

Each instance keeps its own OpenTelemetry instruments, as each Functions host instance does
(Application Insights sums them over `cloud_RoleInstance`). So that `/metrics`, answered by
whichever instance accepts the connection, shows the run's totals, the answering instance
asks every other live instance for its reading (a Linux abstract Unix socket per instance,
named after the run's folder) and merges them with its own:

- counters, histograms and summaries are summed, series by series;
- gauges are the answering instance's own reading: the queue depths read the shared queue,
  so every instance reads the same depth and a sum would multiply it (the app has no
  per-instance gauge; the `process_*`/`python_*` gauges describe the answering process).

Every instance also writes its reading to a snapshot file in the run's folder, every
`SNAPSHOT_SECONDS`, before each reading it hands out, and at shutdown, replaced atomically.
An instance that does not answer within `ASK_SECONDS` (killed, or busy) counts with its
snapshot: a killed instance's counts stay in the totals and no counter goes backwards (no
reading is handed out before it is on disk); what it counted in its last `SNAPSHOT_SECONDS`
before a kill is missing. The folder belongs to the run: a new `cloudscale run` starts from zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "ASK_SECONDS",
    "SNAPSHOT_SECONDS",
    "MetricsExchange",
    "MetricsSnapshots",
    "merge_exposition",
    "new_run_folder",
]

logger = logging.getLogger(__name__)

SNAPSHOT_SECONDS = 1.0
"""How often each instance writes its snapshot: how much of a killed instance's counts may be missing."""
ASK_SECONDS = 1.0
"""How long a scrape waits for another instance's live reading before taking its snapshot."""
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
        """Replace this instance's snapshot: a reader sees the old one or the new one, whole.

        Each write has a temporary file of its own, so two writes at once cannot mix their bytes.
        """
        descriptor, temporary = tempfile.mkstemp(dir=self.folder, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as out:
                out.write(exposition)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def read_others(self) -> list[bytes]:
        """The other instances' latest snapshots (a file that vanished or cannot be read is left out)."""
        found: list[bytes] = []
        for path in sorted(self.folder.glob("*.prom")):
            if path != self.path:
                with contextlib.suppress(OSError):
                    found.append(path.read_bytes())
        return found


class MetricsExchange:
    """One instance's side of the totals: it answers the others' asks, writes its snapshot, and adds up."""

    def __init__(self, snapshots: MetricsSnapshots, read: Callable[[], bytes]) -> None:
        """`read()`: this instance's own Prometheus text, read now."""
        self._snapshots = snapshots
        self._read = read
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._server: asyncio.AbstractServer | None = None
        # One reading at a time, each written before the next is taken: the file only moves forward.
        self._writing = asyncio.Lock()

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._answer, path=_address(self._snapshots.path))
        self._task = asyncio.create_task(self._write_every_interval(), name="metrics-snapshots")

    async def stop(self) -> None:
        """Stop answering and writing; write the last snapshot."""
        self._stop.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._task is not None:
            await self._task
        await self._write()

    async def totals(self) -> bytes:
        """This instance's reading with every other instance's added in (live, else its snapshot)."""
        own = await self._write()
        others = [path for path in sorted(self._snapshots.folder.glob("*.prom")) if path != self._snapshots.path]
        readings = await asyncio.gather(*(_ask(path) for path in others))
        return merge_exposition(own, [reading for reading in readings if reading is not None])

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(await self._write())
            await writer.drain()
        except OSError:
            logger.debug("an instance's ask for metrics went unanswered", exc_info=True)
        finally:
            writer.close()

    async def _write_every_interval(self) -> None:
        while not self._stop.is_set():
            await self._write()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=SNAPSHOT_SECONDS)

    async def _write(self) -> bytes:
        """Read this instance's metrics and write them to its snapshot (a failed write is logged).

        The reading is taken in a thread too: it runs the observable gauges' callbacks (the queue
        depths count rows in SQLite), which must not hold up the event loop.
        """
        async with self._writing:
            reading = await asyncio.to_thread(self._read)
            try:
                await asyncio.to_thread(self._snapshots.write, reading)
            except OSError:
                logger.warning("could not write this instance's metrics snapshot", exc_info=True)
            return reading


async def _ask(snapshot: Path) -> bytes | None:
    """The live reading of the instance whose snapshot is `snapshot`; its snapshot if it does not answer."""
    try:
        async with asyncio.timeout(ASK_SECONDS):
            reader, writer = await asyncio.open_unix_connection(_address(snapshot))
            try:
                return await reader.read()
            finally:
                writer.close()
    except (OSError, TimeoutError):
        pass
    try:
        return await asyncio.to_thread(snapshot.read_bytes)
    except OSError:
        return None


def _address(snapshot: Path) -> str:
    """The abstract socket of the instance whose snapshot is `snapshot` (no file, no path length limit)."""
    digest = hashlib.sha256(str(snapshot.resolve()).encode()).hexdigest()[:32]
    return f"\0cloudscale-metrics-{digest}"


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
                # An empty value is no label at all (Prometheus' data model): an instance that has
                # not seen a label's other values yet leaves it out where another writes it empty.
                present = {k: v for k, v in sample.labels.items() if v != ""}
                series = tuple(sorted((k, v) for k, v in present.items() if k not in ("le", "quantile")))
                key = (sample.name, tuple(sorted(present.items())))
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
