-- The sites the dashboard's picker offers when ANALYTICS_SITES does not list them: those the writer has counted page
-- views for (migrations/0002.rollups.sql keeps one site_totals row per site). A primary-key scan, in code-point order.

-- name: sites_with_data
SELECT site_id FROM site_totals WHERE views > 0 ORDER BY site_id;
