-- Stats read only the rollups the writer maintains (migrations/0002.rollups.sql): primary-key lookups, plus the
-- first entries of one site's (or one site-day's) paths in views order. Nothing here grows with the number of events.
-- LIMIT 3: the contract's three top paths.

-- name: day_totals
SELECT views, users FROM daily_totals WHERE site_id = $1 AND day = $2;

-- name: day_top_paths
-- The same order as `views DESC, path` (path is COLLATE "C": code-point order), spelled as the index
-- daily_path_views_top gives it (migrations/0007.tie_order.sql): a prefix orders paths as the whole path does unless
-- they share it, so only those left to tie on it are sorted, however many paths tie on views.
SELECT path, views FROM daily_path_views
WHERE site_id = $1 AND day = $2
ORDER BY views DESC, left(path, 64), path
LIMIT 3;

-- name: all_time_totals
SELECT views, users FROM site_totals WHERE site_id = $1;

-- name: all_time_top_paths
SELECT path, views FROM site_path_views
WHERE site_id = $1
ORDER BY views DESC, path
LIMIT 3;
