DROP INDEX daily_path_views_top;
