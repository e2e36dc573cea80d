"""`/metrics` of the real process: after a known mix of requests, the exact counts."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.factories import event
from tests.helpers.processes import base_environment, serve, stop, wait_healthy


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{base_url}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_exactly_what_happened(tmp_path: Path, database_url: str, redis_url: str) -> None:
    environment = base_environment(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        ANALYTICS_REDIS_PREFIX=f"metrics-{tmp_path.name}",
        ANALYTICS_WRITER_CONCURRENCY="2",
    )
    with serve(tmp_path, environment) as (base_url, process):
        wait_healthy(base_url, process, 30)
        post = f"{base_url}/api/ingestion/event"
        distinct = [event(user_id=f"u{n}") for n in range(7)]
        for document in [*distinct, distinct[0], distinct[1]]:  # 9 accepted, 2 of them duplicates
            assert httpx.post(post, json=document, timeout=5).status_code == 202
        batch = [event(user_id=f"b{n}") for n in range(5)]
        assert httpx.post(f"{base_url}/api/ingestion/events", json=batch, timeout=5).status_code == 202
        for _ in range(3):
            assert httpx.post(post, json={"site_id": ""}, timeout=5).status_code == 400
        assert httpx.post(post, content=b"x", headers={"content-type": "text/csv"}, timeout=5).status_code == 415
        assert httpx.post(post, content=b" " * 2_000_000, timeout=5).status_code == 413

        deadline = time.monotonic() + 10
        while scrape(base_url).get(("analytics_events_stored_total", ()), 0) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        metrics = scrape(base_url)
        assert stop(process, signal.SIGTERM) == 0

    assert metrics[("analytics_events_accepted_total", ())] == 14
    assert metrics[("analytics_events_stored_total", ())] == 12
    assert metrics[("analytics_events_duplicate_total", ())] == 2
    assert metrics[("analytics_requests_rejected_total", (("reason", "invalid"),))] == 3
    assert metrics[("analytics_requests_rejected_total", (("reason", "unsupported_media_type"),))] == 1
    assert metrics[("analytics_requests_rejected_total", (("reason", "too_large"),))] == 1
    assert metrics[("analytics_requests_rejected_total", (("reason", "queue_full"),))] == 0
    assert metrics[("analytics_events_dead_lettered_total", ())] == 0
    assert metrics[("analytics_queue_depth", ())] == 0
    assert metrics[("analytics_dead_letters", ())] == 0
    assert metrics[("analytics_writers_alive", ())] == 2, "two concurrent writers in the one process"
    assert metrics[("analytics_writer_batch_size_sum", ())] == 14
    batches = metrics[("analytics_writer_batch_size_count", ())]
    assert batches >= 1
    assert metrics[("analytics_end_to_end_lag_seconds_count", ())] == batches
    assert metrics[("analytics_writer_write_seconds_count", ())] == batches
    assert metrics[("analytics_writer_heartbeats_total", ())] >= 1
