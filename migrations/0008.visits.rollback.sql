CREATE INDEX events_site_type_time ON events (site_id, event_type, "timestamp");
DROP INDEX events_site_visitor_time;
DROP INDEX events_site_time;
DROP TABLE visits;
