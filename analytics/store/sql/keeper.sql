-- The distinct keeper (analytics/stats/keeper.py, analytics/stats/cells.py: `keep_day`): a background task of the
-- writer role, not a report, so its reads may span sites (the cells of a day, a chunk of sites at a time).

-- name: unkept_day_sites
-- $1 and $2 a UTC day's bounds: the sites with events that day whose distinct counts of it are not kept, or were
-- kept from other events than its cells now sum to (a late event). The sites come from the cells' key by a skip scan
-- (one descent a site), each day's sum from the key's index alone (migrations/0014.report_cell_sums.sql); no hash set
-- is read here.
WITH RECURSIVE sites(site_id) AS (
    (SELECT site_id FROM report_cells ORDER BY site_id LIMIT 1)
    UNION ALL
    SELECT (SELECT c.site_id FROM report_cells c WHERE c.site_id > s.site_id ORDER BY c.site_id LIMIT 1)
    FROM sites s
    WHERE s.site_id IS NOT NULL
)
SELECT s.site_id
FROM sites s
CROSS JOIN LATERAL (
    SELECT sum(c.events)::bigint AS events
    FROM report_cells c
    WHERE c.site_id = s.site_id AND c.cell >= $1 AND c.cell < $2
) t
WHERE t.events > 0
  AND NOT EXISTS (
      SELECT FROM report_distincts d
      WHERE d.site_id = s.site_id AND d.starts = $1 AND d.ends = $2 AND d.events = t.events
  )
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
