-- Erasure (`analytics erase`, analytics/store/erasure.py): a user's events on a site, or a whole site's rows, removed
-- in one transaction together with everything counted from them, so that the rollups and visits are what the writer
-- would have kept had the removed events never come.

-- name: lock_out_writers
-- First in the transaction, and held to its end. Every writer's merge takes ROW EXCLUSIVE on events with its first
-- statement (the INSERT into event_keys and events, which locks both as it starts) and keeps it to its commit; SHARE ROW EXCLUSIVE conflicts with it (and with itself, so
-- erasures run one at a time) but not with the reads of stats and reports. So the erasure waits for the batches in
-- flight to commit, and the next ones wait for the erasure: it deletes what they committed, and what they insert
-- after it is counted by them from the erased state. Row locks and the writer's per-site advisory locks alone
-- could not give that: the writer's `INSERT INTO daily_users ... ON CONFLICT DO NOTHING` decides that a user is
-- already counted for a day without locking that row, so an erasure deleting the row in between would leave the
-- batch's new page view of that user uncounted. Writers wait at most as long as the erasure runs; an erasure waits at
-- most lock_timeout for them, then fails having changed nothing.
SET LOCAL lock_timeout = '10s';
LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE;

-- name: delete_user_events
-- $1 site_id, $2 user_id. Every event that names a user has that user as its visitor (ingest v2 sets it, the writer
-- fills it in for records queued before, migration 0008 did for rows stored before), so the visitor index finds the
-- user's events: one index range, not the site's events. The removed events go to the writer's inserted_events
-- (store/sql/writer.sql), where `uncount_user_events` and the writer's `rebuild_visits` read the events a change
-- touched. Their idempotency keys go too (an md5 of the user's id among the rest, and a re-delivery of an erased event
-- is new data, as the docs say of events still queued).
WITH erased AS (
    DELETE FROM events
    WHERE site_id = $1 AND visitor = $2 AND user_id = $2
    RETURNING site_id, event_type, path, user_id, visitor, "timestamp", event_key
),
forgotten AS (
    DELETE FROM event_keys k USING erased WHERE k.site_id = erased.site_id AND k.event_key = erased.event_key
)
INSERT INTO inserted_events (site_id, event_type, day, path, user_id, visitor, "timestamp")
SELECT site_id, event_type, ("timestamp" AT TIME ZONE 'UTC')::date, path, user_id, visitor, "timestamp"
FROM erased;

-- name: removed_counts
SELECT count(*) AS events, count(*) FILTER (WHERE event_type = 'page_view') AS page_views FROM inserted_events;

-- name: visits_of_removed
-- The visits of the removed events' visitors, counted before and after they are rebuilt.
SELECT count(*)
FROM visits
WHERE (site_id, visitor) IN (SELECT site_id, visitor FROM inserted_events WHERE visitor IS NOT NULL);

-- name: uncount_user_events
-- The rollups (migrations/0002.rollups.sql) without the page views in inserted_events, which are all of their users'
-- events on their sites: none of those users has a page view left on any of those days, so their daily_users and
-- site_users rows go, and each row that goes takes one from its day's or site's distinct users. A day, path or site
-- left with no page view loses its row, as one that never had any has none. Concurrent writers are locked out
-- (`lock_out_writers`), so each UPDATE leaves its rows as the DELETE after it finds them.
UPDATE daily_path_views AS rollup
SET views = rollup.views - removed.views
FROM (
    SELECT site_id, day, md5(path)::uuid AS path_md5, count(*) AS views
    FROM inserted_events
    WHERE event_type = 'page_view' AND path IS NOT NULL
    GROUP BY site_id, day, path
) removed
WHERE rollup.site_id = removed.site_id AND rollup.day = removed.day AND rollup.path_md5 = removed.path_md5;

DELETE FROM daily_path_views
WHERE views = 0
  AND (site_id, day, path_md5) IN (
      SELECT site_id, day, md5(path)::uuid FROM inserted_events WHERE event_type = 'page_view' AND path IS NOT NULL
  );

WITH gone AS (
    DELETE FROM daily_users
    WHERE (site_id, day, user_md5) IN (
        SELECT site_id, day, md5(user_id)::uuid
        FROM inserted_events
        WHERE event_type = 'page_view' AND user_id IS NOT NULL
    )
    RETURNING site_id, day
),
views AS (
    SELECT site_id, day, count(*) AS views FROM inserted_events WHERE event_type = 'page_view' GROUP BY 1, 2
),
users AS (SELECT site_id, day, count(*) AS users FROM gone GROUP BY 1, 2)
UPDATE daily_totals AS rollup
SET views = rollup.views - views.views, users = rollup.users - coalesce(users.users, 0)
FROM views LEFT JOIN users USING (site_id, day)
WHERE rollup.site_id = views.site_id AND rollup.day = views.day;

DELETE FROM daily_totals
WHERE views = 0 AND (site_id, day) IN (SELECT site_id, day FROM inserted_events WHERE event_type = 'page_view');

UPDATE site_path_views AS rollup
SET views = rollup.views - removed.views
FROM (
    SELECT site_id, md5(path)::uuid AS path_md5, count(*) AS views
    FROM inserted_events
    WHERE event_type = 'page_view' AND path IS NOT NULL
    GROUP BY site_id, path
) removed
WHERE rollup.site_id = removed.site_id AND rollup.path_md5 = removed.path_md5;

DELETE FROM site_path_views
WHERE views = 0
  AND (site_id, path_md5) IN (
      SELECT site_id, md5(path)::uuid FROM inserted_events WHERE event_type = 'page_view' AND path IS NOT NULL
  );

WITH gone AS (
    DELETE FROM site_users
    WHERE (site_id, user_md5) IN (
        SELECT site_id, md5(user_id)::uuid
        FROM inserted_events
        WHERE event_type = 'page_view' AND user_id IS NOT NULL
    )
    RETURNING site_id
),
views AS (SELECT site_id, count(*) AS views FROM inserted_events WHERE event_type = 'page_view' GROUP BY 1),
users AS (SELECT site_id, count(*) AS users FROM gone GROUP BY 1)
UPDATE site_totals AS rollup
SET views = rollup.views - views.views, users = rollup.users - coalesce(users.users, 0)
FROM views LEFT JOIN users USING (site_id)
WHERE rollup.site_id = views.site_id;

DELETE FROM site_totals
WHERE views = 0 AND site_id IN (SELECT site_id FROM inserted_events WHERE event_type = 'page_view');

-- name: uncount_cells
-- The report cells (migrations/0012.report_cells.sql) without the removed events, and with the visits the writer's
-- `rebuild_visits` just changed (visit_changes): the writer's `count_cells` with the events' sign turned. A cell left
-- without events is empty (a visit starts at an event) and goes, as one that never had any has no row.
INSERT INTO report_cells AS c (site_id, cell, pageviews, events, visits, bounces, duration_us, visit_pageviews,
                               visitors, users)
SELECT site_id, cell, sum(pageviews), sum(events), sum(visits), sum(bounces), sum(duration_us), sum(visit_pageviews),
       '{}', '{}'
FROM (
    SELECT site_id, report_cell("timestamp") AS cell, -(event_type = 'page_view')::integer AS pageviews, -1 AS events,
           0 AS visits, 0 AS bounces, 0::bigint AS duration_us, 0 AS visit_pageviews
    FROM inserted_events
    UNION ALL
    SELECT site_id, report_cell(started_at), 0, 0, visits, bounces, duration_us, pageviews
    FROM visit_changes
) changes
WHERE cell >= coalesce((SELECT since FROM events_retention), '-infinity')
GROUP BY site_id, cell
ORDER BY site_id, cell
ON CONFLICT (site_id, cell) DO UPDATE
SET pageviews = c.pageviews + excluded.pageviews, events = c.events + excluded.events,
    visits = c.visits + excluded.visits, bounces = c.bounces + excluded.bounces,
    duration_us = c.duration_us + excluded.duration_us, visit_pageviews = c.visit_pageviews + excluded.visit_pageviews;

DELETE FROM report_cells
WHERE events = 0 AND (site_id, cell) IN (SELECT site_id, report_cell("timestamp") FROM inserted_events);

-- name: forget_user_in_cells
-- $1 site_id, $2 user_id: the user's hash out of every cell of the site, those before retention's horizon included
-- (their events are gone, their distinct sets stay). The user was the visitor of each of their events and no other
-- event has them as visitor or user (`delete_user_events`), so no cell still counts them.
UPDATE report_cells
SET visitors = array_remove(visitors, hashtextextended($2, 0)), users = array_remove(users, hashtextextended($2, 0))
WHERE site_id = $1 AND (hashtextextended($2, 0) = ANY(visitors) OR hashtextextended($2, 0) = ANY(users));

-- name: lock_out_distinct_keepers
-- The kept distinct sets of site $1 (migrations/0013.report_distincts.sql) can hold the erased user's hashes, where
-- the cells' event sums they are checked against did not change (cells whose events retention dropped): they all go.
-- The lock keeps reports from keeping sets counted before the erasure (store/sql/reports.sql: `may_keep_distincts`,
-- the same key 7030), and is held to the end of the transaction.
SELECT pg_advisory_xact_lock(7030, hashtext($1))

-- name: forget_distincts
-- The kept values (migrations/0015.report_values.sql) hold hashes too, and counts of the erased events; so do the
-- weeks (0017) and a breakdown's kept counts (0019).
WITH forgotten_values AS (DELETE FROM report_values WHERE site_id = $1),
forgotten_value_days AS (DELETE FROM report_value_days WHERE site_id = $1),
forgotten_value_weeks AS (DELETE FROM report_value_weeks WHERE site_id = $1),
forgotten_value_week_marks AS (DELETE FROM report_value_weeks_kept WHERE site_id = $1),
forgotten_value_counts AS (DELETE FROM report_value_counts WHERE site_id = $1)
DELETE FROM report_distincts WHERE site_id = $1

-- name: erase_site
-- $1 site_id: every row of the site, in every table that has one; share links included, so that no link shows the
-- site again should its events come back. Each DELETE reads its table's (site_id, ...) index.
WITH erased_events AS (
    DELETE FROM events WHERE site_id = $1 RETURNING event_type = 'page_view' AS page_view
),
erased_keys AS (DELETE FROM event_keys WHERE site_id = $1),
erased_visits AS (DELETE FROM visits WHERE site_id = $1 RETURNING 1),
erased_visit_bounds AS (DELETE FROM site_visit_bounds WHERE site_id = $1),
erased_cells AS (DELETE FROM report_cells WHERE site_id = $1),
erased_daily_totals AS (DELETE FROM daily_totals WHERE site_id = $1),
erased_daily_users AS (DELETE FROM daily_users WHERE site_id = $1),
erased_daily_path_views AS (DELETE FROM daily_path_views WHERE site_id = $1),
erased_site_totals AS (DELETE FROM site_totals WHERE site_id = $1),
erased_site_users AS (DELETE FROM site_users WHERE site_id = $1),
erased_site_path_views AS (DELETE FROM site_path_views WHERE site_id = $1),
erased_share_links AS (DELETE FROM share_links WHERE site_id = $1 RETURNING 1)
SELECT (SELECT count(*) FROM erased_events) AS events,
       (SELECT count(*) FILTER (WHERE page_view) FROM erased_events) AS page_views,
       (SELECT count(*) FROM erased_visits) AS visits,
       (SELECT count(*) FROM erased_share_links) AS share_links;
