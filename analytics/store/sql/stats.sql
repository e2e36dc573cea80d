-- Stats read only the rollups the writer maintains (migrations/0002.rollups.sql): primary-key lookups, plus the
-- first entries of one site's (or one site-day's) paths in views order. Nothing here grows with the number of events.
-- LIMIT 3: the contract's three top paths.

-- name: day_totals
SELECT views, users FROM daily_totals WHERE site_id = $1 AND day = $2;

-- name: day_top_paths
SELECT path, views FROM daily_path_views
WHERE site_id = $1 AND day = $2
ORDER BY views DESC, path
LIMIT 3;

-- name: all_time_totals
SELECT views, users FROM site_totals WHERE site_id = $1;

-- name: all_time_top_paths
SELECT path, views FROM site_path_views
WHERE site_id = $1
ORDER BY views DESC, path
LIMIT 3;
