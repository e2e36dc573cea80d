-- The writer's batch: COPY into staging, then one idempotent merge that also keeps the rollups.

-- name: create_staging
-- Created once per connection (a temp table per batch churns the catalogs); emptied by every commit.
-- staging_events has the key and then the queued record's fields, in its order (store/events.py: STAGING_COLUMNS).
-- inserted_events holds what the merge actually inserted: the only rows the rollups may count.
CREATE TEMP TABLE IF NOT EXISTS staging_events (
    event_key uuid NOT NULL,
    site_id text COLLATE "C" NOT NULL,
    event_type text COLLATE "C" NOT NULL,
    path text COLLATE "C",
    user_id text COLLATE "C",
    ts_us bigint NOT NULL,
    accepted_ms bigint NOT NULL,
    client_ts_us bigint,
    event_id text COLLATE "C",
    visitor text COLLATE "C",
    referrer text COLLATE "C",
    source text COLLATE "C",
    utm_source text COLLATE "C",
    utm_medium text COLLATE "C",
    utm_campaign text COLLATE "C",
    utm_term text COLLATE "C",
    utm_content text COLLATE "C",
    browser text COLLATE "C",
    browser_version text COLLATE "C",
    os text COLLATE "C",
    os_version text COLLATE "C",
    device text COLLATE "C",
    country text COLLATE "C",
    props jsonb
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS inserted_events (
    site_id text COLLATE "C" NOT NULL,
    event_type text COLLATE "C" NOT NULL,
    day date NOT NULL,
    path text COLLATE "C",
    user_id text COLLATE "C",
    visitor text COLLATE "C",
    "timestamp" timestamptz NOT NULL
) ON COMMIT DELETE ROWS;
-- The inserted events of visitors with what a visit takes from them, kept by the merge alone (not by an erasure): a
-- visitor with no stored visit near its new events has no other stored event there, so its visits are made from these
-- rows without reading `events` (rebuild_visits).
CREATE TEMP TABLE IF NOT EXISTS new_visit_events (
    site_id text COLLATE "C" NOT NULL,
    visitor text COLLATE "C" NOT NULL,
    "timestamp" timestamptz NOT NULL,
    event_key uuid NOT NULL,
    event_type text COLLATE "C" NOT NULL,
    path text COLLATE "C",
    referrer text COLLATE "C",
    source text COLLATE "C",
    utm_source text COLLATE "C",
    utm_medium text COLLATE "C",
    utm_campaign text COLLATE "C",
    utm_term text COLLATE "C",
    utm_content text COLLATE "C",
    country text COLLATE "C",
    device text COLLATE "C",
    browser text COLLATE "C",
    browser_version text COLLATE "C",
    os text COLLATE "C",
    os_version text COLLATE "C"
) ON COMMIT DELETE ROWS;
-- Per visitor of the batch, the span whose visits are rebuilt: the new events and the visits they may touch, and
-- whether any stored visit was among those (else the span holds only the new events).
CREATE TEMP TABLE IF NOT EXISTS visit_spans (
    site_id text COLLATE "C" NOT NULL,
    visitor text COLLATE "C" NOT NULL,
    first_at timestamptz NOT NULL,
    last_at timestamptz NOT NULL,
    had_visits boolean NOT NULL
) ON COMMIT DELETE ROWS;
-- The visits a rebuild removed (negative) and made (positive), for the report cells (count_cells).
CREATE TEMP TABLE IF NOT EXISTS visit_changes (
    site_id text COLLATE "C" NOT NULL,
    started_at timestamptz NOT NULL,
    visits integer NOT NULL,
    bounces integer NOT NULL,
    duration_us bigint NOT NULL,
    pageviews integer NOT NULL
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS new_daily_users (
    site_id text COLLATE "C" NOT NULL,
    user_md5 uuid NOT NULL
) ON COMMIT DELETE ROWS;
CREATE OR REPLACE TEMP VIEW new_page_views AS
SELECT site_id, day, path, user_id FROM inserted_events WHERE event_type = 'page_view';

-- name: merge
-- One round trip (several statements, simple protocol), inside the batch's transaction. Every statement takes its
-- row locks in key order (ORDER BY) and all writers run the same statements in the same order, so writers merging
-- overlapping batches wait for each other but never deadlock. The timestamp is rebuilt from whole seconds plus
-- microseconds because interval * bigint goes through float8 (inexact past 2^53 µs).
WITH new_keys AS (
    -- The idempotency key (migrations/0010.partitioned_events.sql): only an event whose key is new is stored.
    INSERT INTO event_keys (site_id, event_key)
    SELECT site_id, event_key FROM staging_events
    ORDER BY 1, 2
    ON CONFLICT DO NOTHING
    RETURNING site_id, event_key
),
inserted AS (
    INSERT INTO events (event_key, site_id, event_type, path, user_id, "timestamp", event_id, visitor, referrer,
                        source, utm_source, utm_medium, utm_campaign, utm_term, utm_content, browser, browser_version,
                        os, os_version, device, country, props)
    -- One row per new key: a batch may carry one event twice (a retry coalesced with its original).
    SELECT DISTINCT ON (site_id, event_key)
           event_key, site_id, event_type, path, user_id,
           to_timestamp(ts_us / 1000000) + (ts_us % 1000000) * interval '1 microsecond',
           -- A record queued before ingest v2 has no visitor: its user is (as ingest v2 would have set).
           event_id, coalesce(visitor, user_id), referrer, source, utm_source, utm_medium, utm_campaign, utm_term,
           utm_content, browser, browser_version, os, os_version, device, country, props
    FROM staging_events JOIN new_keys USING (site_id, event_key)
    ORDER BY site_id, event_key
    RETURNING event_key, site_id, event_type, path, user_id, visitor, "timestamp", referrer, source, utm_source,
              utm_medium, utm_campaign, utm_term, utm_content, browser, browser_version, os, os_version, device, country
),
for_visits AS (
    INSERT INTO new_visit_events
    SELECT site_id, visitor, "timestamp", event_key, event_type, path, referrer, source, utm_source, utm_medium,
           utm_campaign, utm_term, utm_content, country, device, browser, browser_version, os, os_version
    FROM inserted
    WHERE visitor IS NOT NULL
)
INSERT INTO inserted_events (site_id, event_type, day, path, user_id, visitor, "timestamp")
SELECT site_id, event_type, ("timestamp" AT TIME ZONE 'UTC')::date, path, user_id, visitor, "timestamp"
FROM inserted;

INSERT INTO daily_path_views AS rollup (site_id, day, path_md5, path, views)
SELECT site_id, day, md5(path)::uuid, path, count(*)
FROM new_page_views
WHERE path IS NOT NULL
GROUP BY site_id, day, path
ORDER BY 1, 2, 3
ON CONFLICT (site_id, day, path_md5) DO UPDATE SET views = rollup.views + excluded.views;

WITH first_seen AS (
    INSERT INTO daily_users (site_id, day, user_md5)
    SELECT DISTINCT site_id, day, md5(user_id)::uuid
    FROM new_page_views
    WHERE user_id IS NOT NULL
    ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING
    RETURNING site_id, day, user_md5
),
remembered AS (
    INSERT INTO new_daily_users (site_id, user_md5) SELECT site_id, user_md5 FROM first_seen
),
views AS (SELECT site_id, day, count(*) AS views FROM new_page_views GROUP BY 1, 2),
users AS (SELECT site_id, day, count(*) AS users FROM first_seen GROUP BY 1, 2)
INSERT INTO daily_totals AS rollup (site_id, day, views, users)
SELECT site_id, day, views.views, coalesce(users.users, 0)
FROM views LEFT JOIN users USING (site_id, day)
ORDER BY 1, 2
ON CONFLICT (site_id, day) DO UPDATE
SET views = rollup.views + excluded.views, users = rollup.users + excluded.users;

INSERT INTO site_path_views AS rollup (site_id, path_md5, path, views)
SELECT site_id, md5(path)::uuid, path, count(*)
FROM new_page_views
WHERE path IS NOT NULL
GROUP BY site_id, path
ORDER BY 1, 2
ON CONFLICT (site_id, path_md5) DO UPDATE SET views = rollup.views + excluded.views;

WITH first_seen AS (
    -- A user new to the site is new to that day too: only the users daily_users just saw first need checking.
    INSERT INTO site_users (site_id, user_md5)
    SELECT DISTINCT site_id, user_md5
    FROM new_daily_users
    ORDER BY 1, 2
    ON CONFLICT DO NOTHING
    RETURNING site_id
),
views AS (SELECT site_id, count(*) AS views FROM new_page_views GROUP BY 1),
users AS (SELECT site_id, count(*) AS users FROM first_seen GROUP BY 1)
INSERT INTO site_totals AS rollup (site_id, views, users)
SELECT site_id, views.views, coalesce(users.users, 0)
FROM views LEFT JOIN users USING (site_id)
ORDER BY 1
ON CONFLICT (site_id) DO UPDATE
SET views = rollup.views + excluded.views, users = rollup.users + excluded.users;

-- name: rebuild_visits
-- Visits (migrations/0008.visits.sql), run right after `merge` in the same round trip (store/events.py), and by an
-- erasure (store/erasure.py) with the events it removed in inserted_events. A new event can extend a visit, start
-- one, or join two, and a removed one can shorten, split or end one; so every visit of the changed events' visitors
-- within 30 minutes of one of them is deleted, and that stretch of the visitor's stored events is split into visits
-- again: the result is what sessionizing all stored events would give, in any arrival order, and a re-delivered
-- batch (nothing inserted) touches nothing. Writers serialize per site on an advisory lock taken before the rebuild
-- reads (each statement reads what committed before it began); the locks are 1,024 buckets of sites, taken in
-- order, so a batch of many sites holds a bounded number of locks and writers cannot deadlock. A site's bucket is
-- the low bits of its MD5's first four bytes, which the writer's slices (writer/slices.py: site_bucket) compute
-- too: two slices of one writer process never share a bucket, so they never wait for each other here.
-- The visitors' visits and events are read by lateral subqueries that OFFSET 0 keeps apart from the join: one index
-- range per visitor, whatever the (often stale, for a growing table) statistics would make of a join with the table.
SELECT count(pg_advisory_xact_lock(7020, bucket))
FROM (
    SELECT DISTINCT ('x' || left(md5(site_id), 8))::bit(32)::integer & 1023 AS bucket
    FROM (SELECT DISTINCT site_id FROM inserted_events WHERE visitor IS NOT NULL) sites
    ORDER BY bucket
) buckets;

WITH touched AS (
    SELECT site_id, visitor, min("timestamp") AS first_at, max("timestamp") AS last_at
    FROM inserted_events
    WHERE visitor IS NOT NULL
    GROUP BY site_id, visitor
),
stale AS (
    DELETE FROM visits
    WHERE (site_id, visitor, started_at) IN (
        SELECT near.site_id, near.visitor, near.started_at
        FROM touched
        CROSS JOIN LATERAL (
            SELECT site_id, visitor, started_at FROM visits
            WHERE visits.site_id = touched.site_id AND visits.visitor = touched.visitor
              AND visits.started_at <= touched.last_at + interval '30 minutes'
              AND visits.ended_at >= touched.first_at - interval '30 minutes'
            OFFSET 0
        ) near
    )
    RETURNING site_id, visitor, started_at, ended_at, pageviews, events
),
uncounted AS (
    INSERT INTO visit_changes (site_id, started_at, visits, bounces, duration_us, pageviews)
    SELECT site_id, started_at, -1, -(pageviews = 1 AND events = 1)::integer,
           -(extract(epoch FROM ended_at - started_at) * 1000000)::bigint, -pageviews
    FROM stale
)
INSERT INTO visit_spans (site_id, visitor, first_at, last_at, had_visits)
SELECT site_id, visitor, min(first_at), max(last_at), bool_or(had_visits)
FROM (
    SELECT site_id, visitor, first_at, last_at, false AS had_visits FROM touched
    UNION ALL
    SELECT site_id, visitor, started_at, ended_at, true FROM stale
) spans
GROUP BY site_id, visitor;

-- The rebuilt visits, and each site's longest visit as reports bound their joins by (migrations/0011).
WITH rebuilt AS (
INSERT INTO visits
SELECT site_id, visitor, ts, last_at, pageviews, events, pages[1], pages[cardinality(pages)], referrer, source,
       utm_source, utm_medium, utm_campaign, utm_term, utm_content, country, device, browser, browser_version, os,
       os_version
FROM (
    -- A visit's first event, which gives the visit its dimensions, with what the whole visit adds up to; every
    -- window shares one sort.
    SELECT *, row_number() OVER visit_order AS position,
           max(ts) OVER whole_visit AS last_at,
           count(*) FILTER (WHERE event_type = 'page_view') OVER whole_visit AS pageviews,
           count(*) OVER whole_visit AS events,
           array_agg(path) FILTER (WHERE event_type = 'page_view') OVER whole_visit AS pages
    FROM (
        SELECT *, count(*) FILTER (WHERE starts_visit) OVER (PARTITION BY site_id, visitor ORDER BY ts, event_key)
                      AS visit
        FROM (
            SELECT e.*, e."timestamp" AS ts,
                   e."timestamp" - lag(e."timestamp") OVER (PARTITION BY e.site_id, e.visitor
                                                            ORDER BY e."timestamp", e.event_key)
                       > interval '30 minutes' IS NOT FALSE AS starts_visit
            FROM (
                -- A span with stored visits: its stored events, the new ones among them.
                SELECT stored.*
                FROM visit_spans span
                CROSS JOIN LATERAL (
                    SELECT site_id, visitor, "timestamp", event_key, event_type, path, referrer, source, utm_source,
                           utm_medium, utm_campaign, utm_term, utm_content, country, device, browser,
                           browser_version, os, os_version
                    FROM events
                    WHERE events.site_id = span.site_id AND events.visitor = span.visitor
                      AND events."timestamp" BETWEEN span.first_at AND span.last_at
                    OFFSET 0
                ) stored
                WHERE span.had_visits
                UNION ALL
                -- A span without: the new events alone (none after an erasure, which makes no visit).
                SELECT fresh.*
                FROM new_visit_events fresh
                JOIN visit_spans span USING (site_id, visitor)
                WHERE NOT span.had_visits
            ) e
        ) marked
    ) numbered
    WINDOW visit_order AS (PARTITION BY site_id, visitor, visit ORDER BY ts, event_key),
           whole_visit AS (visit_order ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
) visits_and_firsts
WHERE position = 1
ORDER BY site_id, visitor, ts
RETURNING site_id, started_at, ended_at - started_at AS duration, pageviews, events
),
counted AS (
    INSERT INTO visit_changes (site_id, started_at, visits, bounces, duration_us, pageviews)
    SELECT site_id, started_at, 1, (pageviews = 1 AND events = 1)::integer,
           (extract(epoch FROM duration) * 1000000)::bigint, pageviews
    FROM rebuilt
)
INSERT INTO site_visit_bounds AS bound (site_id, longest)
SELECT site_id, max(duration) FROM rebuilt GROUP BY site_id
ORDER BY site_id
ON CONFLICT (site_id) DO UPDATE SET longest = excluded.longest WHERE excluded.longest > bound.longest;

-- name: count_cells
-- The report cells (migrations/0012.report_cells.sql), after `rebuild_visits` in the same round trip: the inserted
-- events by event time, and each visit the rebuild changed by start, its old contribution out and its new one in. A
-- re-delivered batch inserted nothing and rebuilt nothing, so it changes no cell. One upsert in key order for both, so
-- writers sharing cells wait for each other but never deadlock. Cells before retention's `since` are left as they
-- were: a re-delivery of an event retention dropped is stored again as new (its key went with it), and must not be
-- counted twice.
INSERT INTO report_cells AS c (site_id, cell, pageviews, events, visits, bounces, duration_us, visit_pageviews,
                               visitors, users)
SELECT site_id, cell, sum(pageviews), sum(events), sum(visits), sum(bounces), sum(duration_us), sum(visit_pageviews),
       coalesce(array_agg(DISTINCT visitor ORDER BY visitor) FILTER (WHERE visitor IS NOT NULL), '{}'),
       coalesce(array_agg(DISTINCT user_id ORDER BY user_id) FILTER (WHERE user_id IS NOT NULL), '{}')
FROM (
    SELECT site_id, report_cell("timestamp") AS cell, (event_type = 'page_view')::integer AS pageviews, 1 AS events,
           0 AS visits, 0 AS bounces, 0::bigint AS duration_us, 0 AS visit_pageviews,
           hashtextextended(visitor, 0) AS visitor, hashtextextended(user_id, 0) AS user_id
    FROM inserted_events
    UNION ALL
    SELECT site_id, report_cell(started_at), 0, 0, visits, bounces, duration_us, pageviews, NULL, NULL
    FROM visit_changes
) changes
WHERE cell >= coalesce((SELECT since FROM events_retention), '-infinity')
GROUP BY site_id, cell
ORDER BY site_id, cell
ON CONFLICT (site_id, cell) DO UPDATE
SET pageviews = c.pageviews + excluded.pageviews, events = c.events + excluded.events,
    visits = c.visits + excluded.visits, bounces = c.bounces + excluded.bounces,
    duration_us = c.duration_us + excluded.duration_us, visit_pageviews = c.visit_pageviews + excluded.visit_pageviews,
    visitors = hash_union(c.visitors, excluded.visitors), users = hash_union(c.users, excluded.users);

-- name: inserted_count
SELECT count(*) FROM inserted_events;
