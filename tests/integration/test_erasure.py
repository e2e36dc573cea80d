"""Erasure (`analytics erase`): events sent through the real HTTP service and writer, one user erased, and then every
answer (v1 stats, v2 reports) equals a brute force over the events that remain (the oracle of
test_reports_oracle.py), the rollup tables equal a recount of the remaining events by SQL, and the visits a
sessionization of them; also while a writer stores a stream of events, a second run that changes nothing, a whole
site, and the command itself."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import redis.asyncio as aioredis

from analytics.events.contract import epoch_microseconds
from analytics.events.record import Event
from analytics.queue.keys import QueueKeys
from analytics.store.erasure import erase_site, erase_user, user_digest
from analytics.store.events import MERGE, STAGING_COLUMNS, STAGING_TABLE, merge, prepare, staging_rows
from analytics.store.shares import create_share
from tests.helpers.factories import CHROME, IPHONE
from tests.helpers.rollups import assert_rollups_recount_events, site_rows
from tests.helpers.waiting import eventually
from tests.integration.test_reports_oracle import (
    ADDRESSES,
    AGENTS,
    MINUTES,
    PATHS,
    PERSONAS,
    PROPS,
    REFERRERS,
    URLS,
    WINDOW_MINUTES,
    WINDOWS,
    Draft,
    Oracle,
    Stored,
    bodies,
    check_aggregates,
    check_breakdowns,
    check_timeseries,
)
from tests.integration.test_visits import sessions, stored_visits

ERASED_USER = "u1"  # PERSONAS[0]: a user with events on both sites, in every window
ZONES = (ZoneInfo("UTC"), ZoneInfo("Asia/Kolkata"))
example_numbers = itertools.count()


def varied_drafts(seed: int, count: int) -> list[Draft]:
    """Events of three users and three cookieless visitors on two sites, over several days and paths: the oracle's
    kinds of events, drawn with a fixed seed."""
    chooser = random.Random(seed)
    return [
        Draft(
            site=chooser.choice(("a", "a", "b")),
            persona=chooser.randrange(len(PERSONAS)),
            address=chooser.choice(sorted(ADDRESSES)),
            agent=chooser.choice(sorted(AGENTS)),
            window=chooser.randrange(len(WINDOWS)),
            minute=chooser.choice(MINUTES),
            event_type=chooser.choice(("page_view", "page_view", "page_view", "signup", "click")),
            path=chooser.choice(PATHS),
            url=chooser.choice(URLS),
            referrer=chooser.choice(REFERRERS),
            props=chooser.choice(PROPS),
            with_id=chooser.random() < 0.5,
        )
        for _ in range(count)
    ]


async def ingest(client: httpx.AsyncClient, db: asyncpg.Connection, drafts: list[Draft], prefix: str) -> list[Stored]:
    """Send the drafts through the api and wait until the writer has stored them all; what the oracle expects."""
    pairs = list(bodies(drafts, prefix))
    for offset in range(0, len(pairs), 25):
        response = await client.post("/api/ingestion/events", json=[body for body, _ in pairs[offset : offset + 25]])
        assert response.status_code == 202, response.text

    async def all_stored() -> None:
        assert await db.fetchval("SELECT count(*) FROM events WHERE starts_with(site_id, $1)", prefix) == len(pairs)

    await eventually(all_stored, timeout_s=15)
    return [stored for _, stored in pairs]


def v1_expected(events: list[Stored], site: str, day: date | None) -> dict[str, Any] | None:
    """v1 stats by brute force: page views, distinct users, top three paths (views, then code points)."""
    views = [
        event
        for event in events
        if event.visitor.startswith(f"{site}|")
        and event.values["event_type"] == "page_view"
        and (day is None or event.at.date() == day)
    ]
    if not views:
        return None
    paths = Counter(event.values["path"] for event in views if event.values["path"] is not None)
    top = sorted(paths.items(), key=lambda item: (-item[1], item[0]))[:3]
    return {
        "total_views": len(views),
        "unique_users": len({event.user for event in views if event.user is not None}),
        "top_paths": [{"path": path, "views": count} for path, count in top],
    }


async def assert_answers_are_the_oracles(client: httpx.AsyncClient, events: list[Stored], prefix: str) -> None:
    """Every v1 day and all-time answer, and the v2 aggregate (all metrics), time series and breakdowns in two zones,
    equal a brute force over `events`."""
    oracle = Oracle(events)
    days = sorted(
        {(window + timedelta(minutes=minutes)).date() for window in WINDOWS for minutes in (0, WINDOW_MINUTES)}
    )
    for site in ("a", "b"):
        site_id = prefix + site
        for day in (None, *days):
            params = {"site_id": site_id} | ({} if day is None else {"date": day.isoformat()})
            response = await client.get("/api/reporting/stats", params=params)
            expected = v1_expected(events, site, day)
            if expected is None:
                assert response.status_code == 404, (site, day, response.text)
            else:
                data = response.json()["data"]
                assert {key: data[key] for key in expected} == expected, (site, day)
        for zone in ZONES:
            await check_aggregates(client, oracle, site, site_id, zone, [])
            await check_timeseries(client, oracle, site, site_id, zone, [])
            await check_breakdowns(client, oracle, site, site_id, zone, [])


async def assert_visits_are_a_sessionization(db: asyncpg.Connection, *site_ids: str) -> None:
    for site_id in site_ids:
        rows = await db.fetch('SELECT visitor, "timestamp", event_type, path FROM events WHERE site_id = $1', site_id)
        assert await stored_visits(db, site_id) == sessions(list(rows)), site_id


async def test_erasing_a_user_leaves_every_answer_as_if_their_events_never_came(
    service: httpx.AsyncClient, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    prefix = f"e{next(example_numbers)}"
    sent = await ingest(service, db, varied_drafts(16, 160), prefix)
    erased = [event for event in sent if event.visitor == f"a|{ERASED_USER}"]
    kept = [event for event in sent if event.visitor != f"a|{ERASED_USER}"]
    # The seed gives the user page views on several days of site a, and events on site b, which must stay.
    assert len({event.at.date() for event in erased if event.values["event_type"] == "page_view"}) >= 3
    assert any(event.visitor == f"b|{ERASED_USER}" for event in kept)

    erasure = await erase_user(pool, prefix + "a", ERASED_USER)

    await assert_rollups_recount_events(db)
    await assert_visits_are_a_sessionization(db, prefix + "a", prefix + "b")
    await assert_answers_are_the_oracles(service, kept, prefix)
    assert await db.fetchval("SELECT count(*) FROM events WHERE user_id = $1", ERASED_USER) == sum(
        1 for event in kept if event.user == ERASED_USER
    )
    page_views = sum(1 for event in erased if event.values["event_type"] == "page_view")
    assert (erasure.events, erasure.page_views) == (len(erased), page_views)
    assert erasure.visits > 0
    assert erasure.user_digest == user_digest(prefix + "a", ERASED_USER)

    before = {site: await site_rows(db, prefix + site) for site in ("a", "b")}
    again = await erase_user(pool, prefix + "a", ERASED_USER)
    assert (again.events, again.page_views, again.visits) == (0, 0, 0)
    assert {site: await site_rows(db, prefix + site) for site in ("a", "b")} == before


async def test_erasing_a_site_removes_its_rows_from_every_table_and_no_other(
    service: httpx.AsyncClient, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    prefix = f"s{next(example_numbers)}"
    sent = await ingest(service, db, varied_drafts(17, 120), prefix)
    for site in ("a", "b"):
        await create_share(pool, prefix + site, f"digest of {site}".encode())
    untouched = await site_rows(db, prefix + "b")
    assert all(untouched.values())

    erasure = await erase_site(pool, prefix + "a")

    assert not any((await site_rows(db, prefix + "a")).values())
    assert await site_rows(db, prefix + "b") == untouched
    await assert_rollups_recount_events(db)
    on_a = [event for event in sent if event.visitor.startswith("a|")]
    assert (erasure.events, erasure.page_views, erasure.share_links) == (
        len(on_a),
        sum(1 for event in on_a if event.values["event_type"] == "page_view"),
        1,
    )
    assert erasure.visits == len(Oracle(on_a).visits)
    again = await erase_site(pool, prefix + "a")
    assert (again.events, again.visits, again.share_links) == (0, 0, 0)
    assert await site_rows(db, prefix + "b") == untouched


def page_view(site: str, user: str | None, at: datetime, path: str, number: int) -> Event:
    return Event(site, "page_view", path, user, epoch_microseconds(at), 0, event_id=f"{site}-{number}")


async def test_an_erasure_waits_for_a_batch_in_flight_and_removes_it_too(
    db: asyncpg.Connection, pool: asyncpg.Pool, database_url: str
) -> None:
    """The batch holds the user's new page view of a day they already have one on; its transaction is open when the
    erasure starts. The erasure must wait for its commit and then remove that view too."""
    at = datetime(2025, 11, 12, 10, tzinfo=UTC)
    await prepare(db)
    await merge(db, [page_view("w", "u1", at, "/a", 1), page_view("w", "u2", at, "/a", 2)])
    lane = await asyncpg.connect(database_url)
    try:
        await prepare(lane)
        in_flight = [page_view("w", "u1", at + timedelta(minutes=5), "/a", 3), page_view("w", "u3", at, "/b", 4)]
        async with lane.transaction():
            await lane.copy_records_to_table(STAGING_TABLE, records=staging_rows(in_flight), columns=STAGING_COLUMNS)
            await lane.execute(MERGE)
            erasing = asyncio.create_task(erase_user(pool, "w", "u1"))
            await asyncio.sleep(0.5)
            assert not erasing.done()
        erasure = await asyncio.wait_for(erasing, 10)
    finally:
        await lane.close()
    await assert_rollups_recount_events(db)
    await assert_visits_are_a_sessionization(db, "w")
    assert (erasure.events, erasure.page_views) == (2, 2)
    assert await db.fetchval("SELECT count(*) FROM events WHERE user_id = 'u1'") == 0


async def test_an_erasure_while_a_writer_stores_a_stream_keeps_the_rollups_a_recount_of_what_remains(
    service: httpx.AsyncClient, db: asyncpg.Connection, pool: asyncpg.Pool, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    """Round after round, on a day of its own: the user's page view is stored (so the user is counted for that day),
    then a background task posts the user's and others' page views of that day, on the same paths, while the user is
    erased; the erasure starts a little later each round, so that it meets the writer's batch before, during and
    after its transaction. After each round the rollups must be a recount of the events that remain (whichever of
    the user's late events the erasure removed), and the visits a sessionization of them.

    A later page view of the user on that day, or a later erasure, would repair a miscount an erasure made: so each
    round ends with the writer idle and is checked then."""
    numbers = itertools.count()
    others_sent = 0

    def body(day: datetime, user: str | None, agent: str = CHROME) -> dict[str, Any]:
        number = next(numbers)
        return {
            "site_id": "live",
            "event_type": "page_view",
            "path": f"/{number % 3}",
            "timestamp": (day + timedelta(seconds=number)).isoformat().replace("+00:00", "Z"),
            "user_agent": agent,
            "ip": "81.2.69.160",
            **({"user_id": user} if user else {}),
        }

    async def post(documents: list[dict[str, Any]]) -> None:
        nonlocal others_sent
        response = await service.post("/api/ingestion/events", json=documents)
        assert response.status_code == 202, response.text
        others_sent += sum(1 for document in documents if document.get("user_id") != ERASED_USER)

    async def drained() -> None:
        others = await db.fetchval("SELECT count(*) FROM events WHERE user_id IS DISTINCT FROM $1", ERASED_USER)
        assert others == others_sent
        assert await redis.llen(keys.queue) == 0

    async def stream(day: datetime) -> None:
        # The user's events first: the last record posted is another's, and its storage marks the end.
        others = [body(day, "u2") for _ in range(50)] + [body(day, None, IPHONE) for _ in range(50)]
        await post([body(day, ERASED_USER) for _ in range(300)] + others)

    erased_events = 0
    for round_number in range(20):
        day = datetime(2025, 11, 1, 10, tzinfo=UTC) + timedelta(days=round_number)
        await post([body(day, ERASED_USER), body(day, "u2")])
        await eventually(drained, timeout_s=15)
        streaming = asyncio.create_task(stream(day))
        await asyncio.sleep(0.0015 * round_number)
        erased_events += (await erase_user(pool, "live", ERASED_USER)).events
        await streaming
        await eventually(drained, timeout_s=15)
        await assert_rollups_recount_events(db)
        await assert_visits_are_a_sessionization(db, "live")
    assert erased_events > 0


def erase_command(database_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DATABASE_URL": database_url, "LOG_FORMAT": "json"}
    return subprocess.run(
        [sys.executable, "-m", "analytics", "erase", *args],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def audit_lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    return [entry for entry in entries if entry["msg"].startswith("erased ")]


async def test_the_command_erases_and_audits_without_the_user_id(
    database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    at = datetime(2025, 11, 12, 10, tzinfo=UTC)
    user = "jane@example.com"
    await prepare(db)
    await merge(
        db,
        [
            page_view("shop", user, at, "/a", 1),
            page_view("shop", user, at + timedelta(hours=2), "/b", 2),
            Event("shop", "signup", None, user, epoch_microseconds(at + timedelta(hours=2, minutes=1)), 0),
            page_view("shop", "other", at, "/a", 3),
        ],
    )
    digest = user_digest("shop", user)

    result = erase_command(database_url, tmp_path, "--site", "shop", "--user", user)
    assert result.returncode == 0, result.stderr
    summary = f"erased user sha256:{digest} of site 'shop': 3 event(s) (2 page view(s)), 2 visit(s) removed"
    assert result.stdout == summary + "\n"
    [audit] = audit_lines(result)
    assert audit["msg"] == summary
    assert audit["level"] == "info"
    assert (audit["site_id"], audit["user_sha256"], audit["events"], audit["page_views"], audit["visits"]) == (
        "shop",
        digest,
        3,
        2,
        2,
    )
    assert user not in result.stdout + result.stderr
    assert await db.fetchval("SELECT count(*) FROM events WHERE site_id = 'shop'") == 1
    await assert_rollups_recount_events(db)

    again = erase_command(database_url, tmp_path, "--site", "shop", "--user", user)
    assert (
        again.stdout == f"erased user sha256:{digest} of site 'shop': 0 event(s) (0 page view(s)), 0 visit(s) removed\n"
    )
    assert len(audit_lines(again)) == 1

    whole = erase_command(database_url, tmp_path, "--site", "shop", "--all")
    assert whole.stdout == "erased site 'shop': 1 event(s) (1 page view(s)), 1 visit(s), 0 share link(s) removed\n"
    [site_audit] = audit_lines(whole)
    assert (site_audit["user_sha256"], site_audit["events"]) == (None, 1)
    assert await db.fetchval("SELECT count(*) FROM site_totals") == 0


def test_the_command_wants_a_site_and_either_a_user_or_all(database_url: str, tmp_path: Path) -> None:
    for args, message in (
        (("--site", "shop"), "one of the arguments --user --all is required"),
        (("--site", "shop", "--user", "u", "--all"), "argument --all: not allowed with argument --user"),
        (("--user", "u"), "the following arguments are required: --site"),
        (("--site", "shop", "--user", ""), "a user id is 1 to 256 characters"),
        (("--site", "", "--all"), "a site id is 1 to 256 characters"),
    ):
        result = erase_command(database_url, tmp_path, *args)
        assert result.returncode == 2, args
        assert message in result.stderr, (args, result.stderr)
