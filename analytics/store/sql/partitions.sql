-- `events`' monthly partitions (migrations/0010.partitioned_events.sql, where the functions are).

-- name: partition_months
-- The months that have a partition of their own (not the default one).
SELECT to_date(substr(c.relname, 8), 'YYYY_MM') AS month
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_[0-9]{4}_[0-9]{2}$';

-- name: ensure_partition
SELECT ensure_events_partition($1::date);

-- name: drop_before
SELECT since, dropped FROM drop_events_before($1::timestamptz);
