DROP TABLE site_path_views, site_users, site_totals, daily_path_views, daily_users, daily_totals;
