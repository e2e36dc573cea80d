-- The distinct keeper (analytics/stats/keeper.py, analytics/stats/cells.py: `keep_day`): a background task of the
-- writer role, not a report, so its reads may span sites (the cells of a day, a chunk of sites at a time).

-- name: day_sites_to_keep
-- $1 and $2 a UTC day's bounds: the sites with events that day whose distinct counts of it are not kept, or were
-- kept from other events than its cells now sum to (a late event), and whether their values (migrations/0015) are not
-- kept or no longer hold. The sites come from the cells' key by a skip scan (one descent a site), each sum from the
-- key's index alone (migrations/0014.report_cell_sums.sql); no hash set is read here.
WITH RECURSIVE sites(site_id) AS (
    (SELECT site_id FROM report_cells ORDER BY site_id LIMIT 1)
    UNION ALL
    SELECT (SELECT c.site_id FROM report_cells c WHERE c.site_id > s.site_id ORDER BY c.site_id LIMIT 1)
    FROM sites s
    WHERE s.site_id IS NOT NULL
)
SELECT s.site_id,
       NOT EXISTS (
           SELECT FROM report_distincts d
           WHERE d.site_id = s.site_id AND d.starts = $1 AND d.ends = $2 AND d.events = t.events
       ) AS keep_distincts,
       NOT EXISTS (
           SELECT FROM report_value_days k
           WHERE k.site_id = s.site_id AND k.day = $1
             AND k.window_events = (SELECT coalesce(sum(c.events), 0) FROM report_cells c
                                    WHERE c.site_id = s.site_id AND c.cell >= k.window_starts
                                      AND c.cell < k.window_ends)
       ) AS keep_values
FROM sites s
CROSS JOIN LATERAL (
    SELECT sum(c.events)::bigint AS events
    FROM report_cells c
    WHERE c.site_id = s.site_id AND c.cell >= $1 AND c.cell < $2
) t
WHERE t.events > 0
ORDER BY s.site_id

-- name: one_distinct_keeper
-- First in each of the keeper's transactions: one keeper works at a time, whichever process it runs in.
SELECT pg_try_advisory_xact_lock(7031, 0)

-- name: sites_may_keep_distincts
-- `may_keep_distincts` for many sites at once: those of $1 that no erasure is under way for, locked to the
-- transaction's end.
SELECT site FROM unnest($1::text[]) AS site WHERE pg_try_advisory_xact_lock_shared(7030, hashtext(site))

-- name: day_hashes
-- `cell_hashes` of one range ($2, $3) for each of the sites $1.
SELECT s.site_id, sum(c.events)::bigint AS events,
       string_agg(substring(array_send(c.visitors) FROM 21), ''::bytea) AS visitor_hashes,
       string_agg(substring(array_send(c.users) FROM 21), ''::bytea) AS user_hashes
FROM unnest($1::text[]) AS s(site_id)
JOIN report_cells c ON c.site_id = s.site_id AND c.cell >= $2 AND c.cell < $3
GROUP BY s.site_id

-- name: forget_day_values
-- $1 sites, $2 a UTC day: the values kept of it, before `keep_day_values` counts them again, and the sums of its week
-- (migrations/0017.report_value_weeks.sql), which `keep_week_values` makes again from the new ones.
WITH forgotten_weeks AS (
    DELETE FROM report_value_weeks w USING unnest($1::text[]) AS s(site_id)
    WHERE w.site_id = s.site_id AND w.week = date_trunc('week', $2::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
),
forgotten_week_marks AS (
    DELETE FROM report_value_weeks_kept w USING unnest($1::text[]) AS s(site_id)
    WHERE w.site_id = s.site_id AND w.week = date_trunc('week', $2::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
)
DELETE FROM report_values v USING unnest($1::text[]) AS s(site_id) WHERE v.site_id = s.site_id AND v.day = $2

-- name: keep_day_values
-- $1 sites, $2 and $3 a UTC day's bounds: each site's values of the day by dimension (store/sql/reports.sql counts
-- the same: events by their own values and by their visit's, `visit_of_event` with each site's longest visit), and
-- the signature they hold for (migrations/0015.report_values.sql), read in the same statement so from the same
-- snapshot as the events. A dimension missing from an event (no source, no country) is its NULL value.
WITH chunk AS (
    SELECT s.site_id, coalesce(b.longest, interval '0') AS longest,
           report_cell($2::timestamptz - coalesce(b.longest, interval '0') - interval '30 minutes') AS window_starts,
           report_cell($3::timestamptz + coalesce(b.longest, interval '0') + interval '30 minutes')
               + interval '15 minutes' AS window_ends
    FROM unnest($1::text[]) AS s(site_id)
    LEFT JOIN site_visit_bounds b ON b.site_id = s.site_id
),
counted AS (
    SELECT e.site_id, d.dimension, d.value,
           count(*) FILTER (WHERE e.event_type = 'page_view') AS pageviews,
           count(*) AS events,
           coalesce(array_agg(DISTINCT hashtextextended(e.visitor, 0)) FILTER (WHERE e.visitor IS NOT NULL),
                    '{}') AS visitors,
           coalesce(array_agg(DISTINCT hashtextextended(e.user_id, 0)) FILTER (WHERE e.user_id IS NOT NULL),
                    '{}') AS users
    FROM chunk
    JOIN events e ON e.site_id = chunk.site_id AND e."timestamp" >= $2 AND e."timestamp" < $3
    LEFT JOIN visits v
        ON v.site_id = e.site_id AND v.visitor = e.visitor AND e."timestamp" BETWEEN v.started_at AND v.ended_at
       AND v.started_at < $3 AND v.started_at >= $2::timestamptz - chunk.longest
    CROSS JOIN LATERAL (VALUES
        ('event_type', e.event_type), ('path', e.path), ('entry_page', v.entry_page), ('exit_page', v.exit_page),
        ('source', v.source), ('referrer', v.referrer), ('utm_source', v.utm_source), ('utm_medium', v.utm_medium),
        ('utm_campaign', v.utm_campaign), ('utm_term', v.utm_term), ('utm_content', v.utm_content),
        ('country', v.country), ('device', v.device), ('browser', v.browser),
        ('browser_version', v.browser_version), ('os', v.os), ('os_version', v.os_version)
    ) AS d(dimension, value)
    GROUP BY 1, 2, 3
),
kept AS (
    INSERT INTO report_values (site_id, day, dimension, value, pageviews, events, visitor_count, user_count,
                               visitors, users)
    SELECT site_id, $2, dimension, value, pageviews, events, cardinality(visitors), cardinality(users),
           packed_hashes(visitors), packed_hashes(users)
    FROM counted
)
INSERT INTO report_value_days AS k (site_id, day, window_starts, window_ends, window_events, value_counts)
SELECT chunk.site_id, $2, chunk.window_starts, chunk.window_ends, sums.events, counts.value_counts
FROM chunk
CROSS JOIN LATERAL (
    SELECT coalesce(sum(c.events), 0)::bigint AS events
    FROM report_cells c
    WHERE c.site_id = chunk.site_id AND c.cell >= chunk.window_starts AND c.cell < chunk.window_ends
) sums
CROSS JOIN LATERAL (
    SELECT coalesce(jsonb_object_agg(dimension, n), '{}') AS value_counts
    FROM (SELECT dimension, count(*) AS n FROM counted WHERE counted.site_id = chunk.site_id GROUP BY 1) by_dimension
) counts
ON CONFLICT (site_id, day) DO UPDATE
SET window_starts = excluded.window_starts, window_ends = excluded.window_ends,
    window_events = excluded.window_events, value_counts = excluded.value_counts

-- name: week_sites_to_keep
-- $1 a Monday, $2 a later one (UTC midnights): the sites and ISO weeks between them whose seven days' values are kept
-- and whose week sums are not (migrations/0017.report_value_weeks.sql), oldest week first.
SELECT k.site_id, k.week
FROM (
    SELECT site_id, date_trunc('week', day AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS week
    FROM report_value_days
    WHERE day >= $1 AND day < $2
) k
GROUP BY 1, 2
HAVING count(*) = 7
   AND NOT EXISTS (SELECT FROM report_value_weeks_kept w WHERE w.site_id = k.site_id AND w.week = k.week)
ORDER BY 2, 1

-- name: keep_week_values
-- $1 sites, $2 a Monday (UTC midnight): each site's values of that week summed from its seven kept days, distinct
-- visitors and users as the union of the days' hashes, and the week marked kept, in one statement. Each day's row
-- carries its sums once (`whole`) and its hashes one an element (8 bytes each: migrations/0018).
WITH counted AS (
    SELECT r.site_id, r.dimension, r.value,
           coalesce(sum(r.pageviews) FILTER (WHERE part.whole), 0) AS pageviews,
           coalesce(sum(r.events) FILTER (WHERE part.whole), 0) AS events,
           count(DISTINCT part.visitor) AS visitor_count,
           count(DISTINCT part.user_hash) AS user_count
    FROM unnest($1::text[]) AS s(site_id)
    JOIN report_values r
        ON r.site_id = s.site_id AND r.day >= $2 AND r.day < $2::timestamptz + interval '168 hours'
    CROSS JOIN LATERAL (
        SELECT true AS whole, NULL::bytea AS visitor, NULL::bytea AS user_hash
        UNION ALL
        SELECT false, substring(r.visitors FROM 8 * i + 1 FOR 8), NULL
        FROM generate_series(0, length(r.visitors) / 8 - 1) i
        UNION ALL
        SELECT false, NULL, substring(r.users FROM 8 * i + 1 FOR 8)
        FROM generate_series(0, length(r.users) / 8 - 1) i
    ) part
    GROUP BY 1, 2, 3
),
kept AS (
    INSERT INTO report_value_weeks (site_id, week, dimension, value, pageviews, events, visitor_count, user_count)
    SELECT site_id, $2, dimension, value, pageviews, events, visitor_count, user_count FROM counted
)
INSERT INTO report_value_weeks_kept (site_id, week)
SELECT site_id, $2 FROM unnest($1::text[]) AS s(site_id)
ON CONFLICT DO NOTHING
