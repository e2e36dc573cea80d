CREATE UNIQUE INDEX events_idempotency_key ON events
    (site_id, event_type, md5(user_id), md5(path), "timestamp") NULLS NOT DISTINCT;
DROP INDEX events_event_key;
ALTER TABLE events DROP COLUMN event_key;
DROP FUNCTION event_key(text, text, text, text, bigint);
