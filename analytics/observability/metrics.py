"""Prometheus metrics of one process, in a registry of its own (several apps in one process never mix counts)."""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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
        # the queue, read from Redis at scrape time
        self.queue_depth = Gauge("analytics_queue_depth", "Events waiting in the queue.", registry=registry)
        self.processing = Gauge(
            "analytics_processing_events", "Events held by each writer.", ["writer"], registry=registry
        )
        self.dead_letters = Gauge("analytics_dead_letters", "Records in the dead-letter list.", registry=registry)
        self.writers_alive = Gauge(
            "analytics_writers_alive", "Registered writers whose heartbeat has not expired.", registry=registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
