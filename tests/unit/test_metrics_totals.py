"""`/metrics` totals: instances' Prometheus texts merged, snapshots kept per run."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from cloudscale_local.host.metrics_totals import MetricsSnapshots, merge_exposition, new_run_folder

OWN = b"""# HELP cloudscale_events_ingested_total Events received
# TYPE cloudscale_events_ingested_total counter
cloudscale_events_ingested_total{outcome="accepted"} 5.0
# HELP cloudscale_queue_depth Messages waiting or in flight
# TYPE cloudscale_queue_depth gauge
cloudscale_queue_depth 7.0
# HELP cloudscale_ingestion_duration_seconds Time to answer
# TYPE cloudscale_ingestion_duration_seconds histogram
cloudscale_ingestion_duration_seconds_bucket{le="0.1",status="202"} 4.0
cloudscale_ingestion_duration_seconds_bucket{le="+Inf",status="202"} 5.0
cloudscale_ingestion_duration_seconds_count{status="202"} 5.0
cloudscale_ingestion_duration_seconds_sum{status="202"} 0.25
"""

OTHER = b"""# HELP cloudscale_events_ingested_total Events received
# TYPE cloudscale_events_ingested_total counter
cloudscale_events_ingested_total{outcome="accepted"} 3.0
cloudscale_events_ingested_total{outcome="rejected"} 1.0
# HELP cloudscale_queue_depth Messages waiting or in flight
# TYPE cloudscale_queue_depth gauge
cloudscale_queue_depth 7.0
# HELP cloudscale_ingestion_duration_seconds Time to answer
# TYPE cloudscale_ingestion_duration_seconds histogram
cloudscale_ingestion_duration_seconds_bucket{le="0.1",status="202"} 1.0
cloudscale_ingestion_duration_seconds_bucket{le="+Inf",status="202"} 3.0
cloudscale_ingestion_duration_seconds_count{status="202"} 3.0
cloudscale_ingestion_duration_seconds_sum{status="202"} 0.5
# HELP cloudscale_fraud_detected_total Fraud rules fired
# TYPE cloudscale_fraud_detected_total counter
cloudscale_fraud_detected_total{rule="velocity"} 2.0
"""


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def test_counters_and_histograms_are_summed_and_a_shared_gauge_is_read_once() -> None:
    merged = samples(merge_exposition(OWN, [OTHER]))

    assert merged[("cloudscale_events_ingested_total", (("outcome", "accepted"),))] == 8
    # a series only the other instance has is in the totals
    assert merged[("cloudscale_events_ingested_total", (("outcome", "rejected"),))] == 1
    assert merged[("cloudscale_fraud_detected_total", (("rule", "velocity"),))] == 2
    assert merged[("cloudscale_ingestion_duration_seconds_bucket", (("le", "0.1"), ("status", "202")))] == 5
    assert merged[("cloudscale_ingestion_duration_seconds_bucket", (("le", "+Inf"), ("status", "202")))] == 8
    assert merged[("cloudscale_ingestion_duration_seconds_count", (("status", "202"),))] == 8
    assert merged[("cloudscale_ingestion_duration_seconds_sum", (("status", "202"),))] == 0.75
    # the queue depth reads the shared queue: every instance sees the same 7, the total is 7
    assert merged[("cloudscale_queue_depth", ())] == 7


def test_a_label_left_empty_is_the_same_series_as_one_without_it() -> None:
    # An instance that has seen only requests without a key exports no `tenant` label; one that
    # has also seen keyed requests exports `tenant=""` for the same series (Prometheus: the same).
    own = b"""# TYPE cloudscale_events_ingested_total counter
cloudscale_events_ingested_total{outcome="accepted"} 2.0
"""
    other = b"""# TYPE cloudscale_events_ingested_total counter
cloudscale_events_ingested_total{outcome="accepted",tenant=""} 3.0
cloudscale_events_ingested_total{outcome="accepted",tenant="shop"} 1.0
"""
    merged = samples(merge_exposition(own, [other]))

    assert merged == {
        ("cloudscale_events_ingested_total", (("outcome", "accepted"),)): 5,
        ("cloudscale_events_ingested_total", (("outcome", "accepted"), ("tenant", "shop"))): 1,
    }


def test_alone_the_merge_gives_back_the_own_reading() -> None:
    assert samples(merge_exposition(OWN, [])) == samples(OWN)


def test_an_instance_reads_the_other_snapshots_not_its_own(tmp_path: Path) -> None:
    first, second = MetricsSnapshots(tmp_path, "instance-0"), MetricsSnapshots(tmp_path, "instance-1")
    first.write(OWN)
    second.write(OTHER)
    second.write(OTHER)  # replaced, not appended

    assert first.read_others() == [OTHER]
    assert second.read_others() == [OWN]


def test_a_new_run_starts_from_zero_and_leaves_a_live_run_alone(tmp_path: Path) -> None:
    ended, ended_lock = new_run_folder(tmp_path)
    MetricsSnapshots(ended, "instance-0").write(OWN)
    os.close(ended_lock)  # its supervisor is gone
    live, live_lock = new_run_folder(tmp_path)
    MetricsSnapshots(live, "instance-0").write(OWN)

    mine, my_lock = new_run_folder(tmp_path)

    assert not ended.exists()
    assert (live / "instance-0.prom").exists()
    assert list(mine.glob("*.prom")) == []
    for descriptor in (live_lock, my_lock):
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)


def test_snapshots_written_at_once_never_mix_and_never_fail(tmp_path: Path) -> None:
    # GIVEN one instance's snapshot written from several threads at once (its timer, a scrape, another's ask)
    snapshots = MetricsSnapshots(tmp_path, "instance-0")
    readings = [(f"# reading {n}\n" + "x" * 200_000 + "\n").encode() for n in range(4)]
    errors: list[BaseException] = []

    def write_many(reading: bytes) -> None:
        try:
            for _ in range(100):
                snapshots.write(reading)
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=write_many, args=(reading,)) for reading in readings]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # THEN every write succeeded, the file is one whole reading, and no temporary file is left
    assert errors == []
    assert snapshots.path.read_bytes() in readings
    assert [path.name for path in tmp_path.iterdir()] == ["instance-0.prom"]
