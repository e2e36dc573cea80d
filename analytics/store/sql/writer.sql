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
    user_id text COLLATE "C"
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
WITH inserted AS (
    INSERT INTO events (event_key, site_id, event_type, path, user_id, "timestamp", event_id, visitor, referrer,
                        source, utm_source, utm_medium, utm_campaign, utm_term, utm_content, browser, browser_version,
                        os, os_version, device, country, props)
    SELECT event_key, site_id, event_type, path, user_id,
           to_timestamp(ts_us / 1000000) + (ts_us % 1000000) * interval '1 microsecond',
           event_id, visitor, referrer, source, utm_source, utm_medium, utm_campaign, utm_term, utm_content, browser,
           browser_version, os, os_version, device, country, props
    FROM staging_events
    ORDER BY event_key
    ON CONFLICT (event_key) DO NOTHING
    RETURNING site_id, event_type, path, user_id, "timestamp"
)
INSERT INTO inserted_events (site_id, event_type, day, path, user_id)
SELECT site_id, event_type, ("timestamp" AT TIME ZONE 'UTC')::date, path, user_id
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

-- name: inserted_count
SELECT count(*) FROM inserted_events;
