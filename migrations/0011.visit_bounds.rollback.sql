DROP TABLE site_visit_bounds;
