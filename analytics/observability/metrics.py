"""Prometheus metrics of one process, in a registry of its own (several apps in one process never mix counts).

Under `serve --workers N` a scrape lands on any one worker, so each worker answers for all of them: the workers'
counters and histograms live in files under PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode, which the
library picks from that variable when it is imported, so the parent sets it before starting the workers), and a scrape
sums every file, those of workers that have ended included, so a total never goes back. The queue's gauges are not
any process's state: they are read from Redis at scrape time and emitted as read, never stored in those files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

REJECTION_REASONS: Final = (
    "invalid",
    "too_large",
    "unsupported_media_type",
    "forbidden",
    "rate_limited",
    "queue_full",
    "queue_unavailable",
)
BOT_REASONS: Final = ("empty", "crawler", "headless")
BATCH_BUCKETS: Final = (1, 10, 50, 100, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000)
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LAG_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
MULTIPROCESS_DIR: Final = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def multiprocess_collection() -> Iterator[Path]:
    """A fresh directory for the metric files of the processes started inside, named in PROMETHEUS_MULTIPROC_DIR
    (which they inherit) and removed afterwards: a restart counts from zero, as a single process does."""
    directory = tempfile.mkdtemp(prefix="analytics-metrics-")
    previous = os.environ.get(MULTIPROCESS_DIR)
    os.environ[MULTIPROCESS_DIR] = directory
    try:
        yield Path(directory)
    finally:
        if previous is None:
            del os.environ[MULTIPROCESS_DIR]
        else:
            os.environ[MULTIPROCESS_DIR] = previous
        shutil.rmtree(directory, ignore_errors=True)


class QueueGauges:
    """The queue as this process's last scrape read it from Redis, emitted as read (whichever worker answers)."""

    def __init__(self) -> None:
        self._queued = 0
        self._dead = 0
        self._writers_alive = 0
        self._processing: dict[str, int] = {}
        self._shard_depths: list[int] = []

    def set(
        self,
        queued: int,
        dead: int,
        writers_alive: int,
        processing: Mapping[str, int],
        shard_depths: Sequence[int],
    ) -> None:
        self._queued = queued
        self._dead = dead
        self._writers_alive = writers_alive
        self._processing = dict(processing)
        self._shard_depths = list(shard_depths)

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "analytics_queue_depth", "Events waiting in the queue (all shards).", value=self._queued
        )
        shards = GaugeMetricFamily(
            "analytics_queue_shard_depth", "Events waiting in each queue shard.", labels=["shard"]
        )
        for shard, depth in enumerate(self._shard_depths):
            shards.add_metric([str(shard)], depth)
        yield shards
        processing = GaugeMetricFamily(
            "analytics_processing_events", "Events held by each writer lane (all shards).", labels=["writer"]
        )
        for writer_id, held in self._processing.items():
            processing.add_metric([writer_id], held)
        yield processing
        yield GaugeMetricFamily(
            "analytics_dead_letters", "Records in the dead-letter lists (all shards).", value=self._dead
        )
        yield GaugeMetricFamily(
            "analytics_writers_alive", "Registered writers whose heartbeat has not expired.", value=self._writers_alive
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        # api
        self.events_accepted = Counter(
            "analytics_events_accepted", "Events answered 202: queued in Redis.", registry=registry
        )
        self.requests_rejected = Counter(
            "analytics_requests_rejected", "Ingestion requests refused, by reason.", ["reason"], registry=registry
        )
        self.rejected = {reason: self.requests_rejected.labels(reason) for reason in REJECTION_REASONS}
        self.bot_events = Counter(
            "analytics_bot_events",
            "Events from bots (empty User-Agent, known crawlers, headless browsers): answered 202, not stored.",
            ["reason"],
            registry=registry,
        )
        self.bots = {reason: self.bot_events.labels(reason) for reason in BOT_REASONS}
        self.unavailable = Counter(
            "analytics_unavailable_responses",
            "503 answers, by the dependency that was missing.",
            ["dependency"],
            registry=registry,
        )
        # writer
        self.events_stored = Counter(
            "analytics_events_stored", "Events the writer inserted into PostgreSQL.", registry=registry
        )
        self.events_duplicate = Counter(
            "analytics_events_duplicate",
            "Delivered events that were already stored (a re-delivery or a client's retry).",
            registry=registry,
        )
        self.events_dead_lettered = Counter(
            "analytics_events_dead_lettered", "Records moved to the dead-letter list.", registry=registry
        )
        self.batch_size = Histogram(
            "analytics_writer_batch_size", "Records per committed batch.", buckets=BATCH_BUCKETS, registry=registry
        )
        self.write_seconds = Histogram(
            "analytics_writer_write_seconds",
            "COPY, merge and commit of one batch.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.lag_seconds = Histogram(
            "analytics_end_to_end_lag_seconds",
            "From the 202 to the commit, for the oldest event of each batch.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.heartbeats = Counter(
            "analytics_writer_heartbeats", "Heartbeats this process's writer sent.", registry=registry
        )
        # what a scrape answers: this registry, or every worker's files
        self._exposed = registry
        directory = os.environ.get(MULTIPROCESS_DIR)
        if directory:
            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed, directory)  # type: ignore[no-untyped-call]
        # the queue, read from Redis at scrape time
        self.queue = QueueGauges()
        self._exposed.register(self.queue)

    def render(self) -> bytes:
        return generate_latest(self._exposed)
