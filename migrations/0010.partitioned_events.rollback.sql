-- Back to one plain table, every event carried, with 0008's keys and indexes and `id` an identity column again.
DROP FUNCTION drop_events_before(timestamptz);
DROP FUNCTION ensure_events_partition(date);
DROP TABLE events_retention;
DROP TABLE event_keys;
CREATE TABLE events_plain (LIKE events);
INSERT INTO events_plain SELECT * FROM events;
DROP TABLE events;
ALTER TABLE events_plain RENAME TO events;
ALTER TABLE events ALTER COLUMN inserted_at SET DEFAULT now();
ALTER TABLE events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY;
SELECT setval(pg_get_serial_sequence('events', 'id'), coalesce(max(id), 0) + 1, false) FROM events;
ALTER TABLE events ADD PRIMARY KEY (id);
CREATE UNIQUE INDEX events_event_key ON events (event_key);
CREATE INDEX events_site_time ON events (site_id, "timestamp");
CREATE INDEX events_site_visitor_time ON events (site_id, visitor, "timestamp") WHERE visitor IS NOT NULL;
