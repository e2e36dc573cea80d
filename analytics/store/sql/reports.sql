-- Reporting API v2 (analytics/stats/reports.py). These are templates: analytics/stats/reports.py fills each {slot}
-- with other entries of this file or with a column of its fixed dimension table, never with request text; every
-- value from a request (site, instants, filter values, property keys) is a $n parameter.
-- $1 site_id, $2 first instant (included), $3 last instant (excluded), $4 bucket starts in order (the first is $2):
-- an aggregate or a breakdown has one bucket, a time series one per interval.

-- name: event_metrics
-- Event metrics by value and bucket: events by their own time.
SELECT {value} AS value, width_bucket(e."timestamp", $4::timestamptz[]) AS bucket,
       count(*) FILTER (WHERE e.event_type = 'page_view') AS pageviews,
       count(*) AS events,
       count(DISTINCT e.visitor) AS visitors,
       count(DISTINCT e.user_id) AS users
FROM events e
{join}
WHERE e.site_id = $1 AND e."timestamp" >= $2 AND e."timestamp" < $3{conditions}
GROUP BY 1, 2

-- name: visit_of_event
-- An event's visit, for visit dimensions of event metrics (a visitor's visits never overlap). The visit began before
-- the period's end and at most the site's longest visit before its start (migrations/0011.visit_bounds.sql): bounds
-- on the visits' (site_id, started_at) index, so the join reads the period's visits, not all the site ever had.
LEFT JOIN visits v
    ON v.site_id = e.site_id AND v.visitor = e.visitor AND e."timestamp" BETWEEN v.started_at AND v.ended_at
   AND v.started_at < $3
   AND v.started_at >= $2::timestamptz - coalesce((SELECT longest FROM site_visit_bounds WHERE site_id = $1), interval '0')

-- name: visit_metrics
-- Visit metrics by value and bucket: a visit belongs to the range and the bucket it starts in.
SELECT {value} AS value, width_bucket(v.started_at, $4::timestamptz[]) AS bucket,
       count(*) AS visits,
       count(*) FILTER (WHERE v.pageviews = 1 AND v.events = 1) AS bounces,
       coalesce(sum((extract(epoch FROM v.ended_at - v.started_at) * 1000000)::bigint), 0)::bigint AS duration_us,
       coalesce(sum(v.pageviews), 0)::bigint AS visit_pageviews
FROM visits v
{join}
WHERE v.site_id = $1 AND v.started_at >= $2 AND v.started_at < $3{conditions}
GROUP BY 1, 2

-- name: events_of_visit
-- For visit metrics under event filters or by an event dimension: the values of the visit's matching events,
-- each once (a visit counts once per value, and only if one of its events matches every event filter).
CROSS JOIN LATERAL (
    SELECT DISTINCT {value} AS value
    FROM events e
    WHERE e.site_id = v.site_id AND e.visitor = v.visitor
      AND e."timestamp" BETWEEN v.started_at AND v.ended_at{conditions}
) matched

-- name: is_one_of
-- The expression is one of the values; a missing value matches when the values include (none).
coalesce({expression} = ANY(${values}::text[]), ${none}::boolean)

-- name: is_present_one_of
-- `is_one_of` without (none): strict, so a missing visit never matches, which lets PostgreSQL turn the events' outer
-- join with their visits into an inner one and filter the visits before joining (a filter on country==DE joins the
-- German visits, not all of them).
{expression} = ANY(${values}::text[])

-- name: is_none_of
NOT coalesce({expression} = ANY(${values}::text[]), ${none}::boolean)

-- name: contains
strpos({expression}, ${values}::text) > 0

-- name: property
(e.props ->> ${key}::text)

-- name: property_keys
-- A breakdown by props keys: an event is counted under each key it has (ingestion refuses null values, so each has
-- a value); an event without props is in no row.
jsonb_object_keys(e.props)

-- name: cell_sums
-- An unfiltered report from the report cells (migrations/0012.report_cells.sql), whose bounds are all cell bounds:
-- the sums by bucket (the buckets are local days; analytics/stats/cells.py adds them up into the report's).
SELECT width_bucket(c.cell, $4::timestamptz[]) AS bucket,
       sum(c.pageviews)::bigint AS pageviews, sum(c.events)::bigint AS events, sum(c.visits)::bigint AS visits,
       sum(c.bounces)::bigint AS bounces, sum(c.duration_us)::bigint AS duration_us,
       sum(c.visit_pageviews)::bigint AS visit_pageviews
FROM report_cells c
WHERE c.site_id = $1 AND c.cell >= $2 AND c.cell < $3
GROUP BY 1

-- name: cell_hashes
-- $1 site_id, $2 and $3 the ranges' starts and ends (cell bounds): each range's events, and its cells' visitor and
-- user hashes as the elements of their arrays' binary form (array_send: a 20-byte header, then a 4-byte length and 8
-- bytes each), one bytea a range, which analytics/stats/sketch.py counts distinct with numpy rather than one Python int
-- at a time. The events come from the same rows as the hashes: what a kept distinct count holds for.
SELECT r.number, sum(c.events)::bigint AS events,
       string_agg(substring(array_send(c.visitors) FROM 21), ''::bytea) AS visitor_hashes,
       string_agg(substring(array_send(c.users) FROM 21), ''::bytea) AS user_hashes
FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS r(starts, ends, number)
JOIN report_cells c ON c.site_id = $1 AND c.cell >= r.starts AND c.cell < r.ends
GROUP BY r.number

-- name: kept_distincts
-- $1 site_id, $2 and $3 ranges' starts and ends: the distinct counts kept for them (migrations/0013), without the
-- sets, which only a union needs.
SELECT d.starts, d.ends, d.events, d.visitors, d.users, d.visitors_exact, d.users_exact
FROM unnest($2::timestamptz[], $3::timestamptz[]) AS r(starts, ends)
JOIN report_distincts d ON d.site_id = $1 AND d.starts = r.starts AND d.ends = r.ends

-- name: kept_distinct_sets
SELECT d.starts, d.ends, d.events, d.visitors, d.users, d.visitors_exact, d.users_exact, d.visitor_set, d.user_set
FROM unnest($2::timestamptz[], $3::timestamptz[]) AS r(starts, ends)
JOIN report_distincts d ON d.site_id = $1 AND d.starts = r.starts AND d.ends = r.ends

-- name: may_keep_distincts
-- First in the transaction that counts and keeps distinct sets of site $1, and held to its end; an erasure holds it
-- exclusively while it deletes the site's kept sets (store/sql/erasure.sql: `forget_distincts`, the same key 7030).
-- So what a report counts after taking it either saw the erasure or is deleted by it; a report that finds it taken
-- keeps nothing, rather than wait for an erasure.
SELECT pg_try_advisory_xact_lock_shared(7030, hashtext($1))

-- name: keep_distincts
-- $1 site_id, then one array a column: the distinct sets a report counted, each with the events its cells summed to.
-- In key order, so reports keeping the same ranges wait for each other but never deadlock.
INSERT INTO report_distincts AS d (site_id, starts, ends, events, visitors, users, visitors_exact, users_exact,
                                   visitor_set, user_set)
SELECT $1, * FROM unnest($2::timestamptz[], $3::timestamptz[], $4::bigint[], $5::bigint[], $6::bigint[],
                         $7::boolean[], $8::boolean[], $9::bytea[], $10::bytea[])
ORDER BY 2, 3
ON CONFLICT (site_id, starts, ends) DO UPDATE
SET events = excluded.events, visitors = excluded.visitors, users = excluded.users,
    visitors_exact = excluded.visitors_exact, users_exact = excluded.users_exact,
    visitor_set = excluded.visitor_set, user_set = excluded.user_set

-- name: first_event
-- Where `period=all` starts.
SELECT min("timestamp") FROM events WHERE site_id = $1

-- name: first_cell
-- Where an unfiltered `period=all` starts: the cells outlive retention.
SELECT min(cell) FROM report_cells WHERE site_id = $1

-- name: completeness
-- Since when raw events, and the report cells, are complete (NULL: from the first event).
SELECT since, cells_since FROM events_retention

-- name: live_visitors
-- Visitors with an event in the window: the last five minutes, and a little ahead for clocks running fast.
SELECT count(DISTINCT visitor) FROM events WHERE site_id = $1 AND "timestamp" >= $2 AND "timestamp" < $3

-- name: top_values
-- One page of a breakdown whose metrics all come from one query: ordered as the contract says (the first metric,
-- rounded as answered, descending; then the value by code point, a missing one last), counted before paging.
SELECT *, count(*) OVER () AS total_rows
FROM ({grouped}) grouped
ORDER BY {rank} DESC, value COLLATE "C" NULLS LAST
LIMIT ${limit} OFFSET ${offset}

-- name: rank_by_bounce_rate
round(100.0 * bounces / visits)

-- name: rank_by_visit_duration
round(duration_us / (visits * 1000000.0))

-- name: rank_by_views_per_visit
round(100.0 * visit_pageviews / visits)

-- name: count_values
-- How many values a breakdown has, when the page asked for lies past the last.
SELECT count(*) FROM ({grouped}) grouped

-- name: kept_value_days
-- $1 site_id, $2 and $3 the first and last UTC midnights of whole days in a breakdown's range: the days whose kept
-- values (migrations/0015.report_values.sql) still hold, i.e. whose window's cells sum to what they were counted from;
-- with the number of values of dimension $4 each has, and whether its week's sums are kept (migrations/0017).
SELECT k.day, coalesce((k.value_counts ->> $4::text)::bigint, 0) AS value_count, w.week IS NOT NULL AS week_kept
FROM report_value_days k
LEFT JOIN report_value_weeks_kept w
    ON w.site_id = $1 AND w.week = date_trunc('week', k.day AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
WHERE k.site_id = $1 AND k.day >= $2 AND k.day < $3
  AND k.window_events = (SELECT coalesce(sum(c.events), 0) FROM report_cells c
                         WHERE c.site_id = $1 AND c.cell >= k.window_starts AND c.cell < k.window_ends)

-- name: kept_value_sums
-- $1 site_id, $2 dimension, $3 kept days, $4 kept weeks (none of whose days is among $3): each value's sums over them;
-- a distinct count's sum over the parts bounds it from above and its greatest part from below
-- (analytics/stats/values.py ranks with both).
SELECT value, sum(pageviews)::bigint AS pageviews, sum(events)::bigint AS events,
       sum(visitor_count)::bigint AS visitors_at_most, max(visitor_count) AS visitors_at_least,
       sum(user_count)::bigint AS users_at_most, max(user_count) AS users_at_least
FROM (
    SELECT value, pageviews, events, visitor_count, user_count
    FROM report_values
    WHERE site_id = $1 AND dimension = $2 AND day = ANY($3::timestamptz[])
    UNION ALL
    SELECT value, pageviews, events, visitor_count, user_count
    FROM report_value_weeks
    WHERE site_id = $1 AND dimension = $2 AND week = ANY($4::timestamptz[])
) parts
GROUP BY value

-- name: kept_value_hashes
-- $1 site_id, $2 dimension, $3 kept days, $4 values, $5 whether the missing value too, $6 visitors (else users): their
-- hashes over the days, 8 bytes each (migrations/0018.report_value_hashes.sql), read as stored.
SELECT value, string_agg(CASE WHEN $6 THEN visitors ELSE users END, ''::bytea) AS hashes
FROM report_values
WHERE site_id = $1 AND dimension = $2 AND day = ANY($3::timestamptz[])
  AND (value = ANY($4::text[]) OR ($5 AND value IS NULL))
GROUP BY value

-- name: kept_value_counts
-- $1 site_id, $2 dimension, $3 starts, $4 ends: the distinct counts earlier reports kept for the range's values, each
-- with the events the value summed to (migrations/0019.report_value_counts.sql); NULL where that metric was not counted.
SELECT value, events, visitors, users
FROM report_value_counts
WHERE site_id = $1 AND dimension = $2 AND starts = $3 AND ends = $4

-- name: keep_value_counts
-- $1 site_id, $2 dimension, $3 starts, $4 ends, then a column per array: what a report counted. A row kept with the
-- same events gains the metric it lacked; one kept with other events is replaced. In key order, so reports keeping
-- the same range wait for each other but never deadlock.
INSERT INTO report_value_counts AS c (site_id, dimension, starts, ends, value, events, visitors, users)
SELECT $1, $2, $3, $4, value, events, visitors, users
FROM unnest($5::text[], $6::bigint[], $7::integer[], $8::integer[]) AS counted (value, events, visitors, users)
ORDER BY value NULLS LAST
ON CONFLICT (site_id, dimension, starts, ends, value) DO UPDATE
SET visitors = CASE WHEN c.events = excluded.events THEN coalesce(excluded.visitors, c.visitors)
                    ELSE excluded.visitors END,
    users = CASE WHEN c.events = excluded.events THEN coalesce(excluded.users, c.users) ELSE excluded.users END,
    events = excluded.events

-- name: top_day_values
-- $1 site_id, $2 dimension, $3 a kept day, $4 limit, $5 offset: one page of the day's values in the contract's order
-- by page views, from the index in that order: N entries read however many values tie.
SELECT value, pageviews, events, visitor_count AS visitors, user_count AS users
FROM report_values
WHERE site_id = $1 AND dimension = $2 AND day = $3
ORDER BY pageviews DESC, value NULLS LAST
LIMIT $4 OFFSET $5

-- name: top_day_values_by_visitors
SELECT value, pageviews, events, visitor_count AS visitors, user_count AS users
FROM report_values
WHERE site_id = $1 AND dimension = $2 AND day = $3
ORDER BY visitor_count DESC, value NULLS LAST
LIMIT $4 OFFSET $5

-- name: event_value_hashes
-- `event_metrics` by value over one range ($2, $3), with the distinct hashes instead of their counts (the parts of a
-- breakdown's range that kept values do not cover: its ends, today, a day a late event changed).
SELECT {value} AS value,
       count(*) FILTER (WHERE e.event_type = 'page_view') AS pageviews,
       count(*) AS events,
       substring(array_send(coalesce(array_agg(DISTINCT hashtextextended(e.visitor, 0))
                                         FILTER (WHERE e.visitor IS NOT NULL), ARRAY[]::bigint[])) FROM 21)
           AS visitor_hashes,
       substring(array_send(coalesce(array_agg(DISTINCT hashtextextended(e.user_id, 0))
                                         FILTER (WHERE e.user_id IS NOT NULL), ARRAY[]::bigint[])) FROM 21)
           AS user_hashes
FROM events e
{join}
WHERE e.site_id = $1 AND e."timestamp" >= $2 AND e."timestamp" < $3
GROUP BY 1
