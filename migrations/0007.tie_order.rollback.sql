DROP INDEX daily_path_views_top;
CREATE INDEX daily_path_views_top ON daily_path_views (site_id, day, views DESC);
