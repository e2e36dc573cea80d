-- depends: 0009.share_links
-- `events` partitioned by month of its "timestamp" (UTC), so old months can be dropped whole (ANALYTICS_RETENTION_DAYS)
-- and a report over a period reads only that period's partitions. Every stored event is carried over.
--
-- Partitions are monthly tables events_YYYY_MM. The writer creates the month's partition before it stores a batch
-- holding events of a month that has none (ensure_events_partition below), and keeps the next months ahead
-- (analytics/store/partitions.py); so no cron is needed. Months far from now (ingestion takes timestamps from 1970 on,
-- and anyone may post them) go to events_default instead, so no one can make thousands of partitions.
--
-- A partitioned table's unique index must include the partition column, and UNIQUE (event_key, "timestamp") would not
-- be the idempotency key: the key of an event with an event_id leaves its timestamp out (a re-send is one event
-- whatever else changed), and the stored timestamp of any event moves with the client's clock skew, which the key
-- leaves out too, so two deliveries of one event may fall in two months. So the keys of the stored events have a table
-- of their own, event_keys, not partitioned; the writer stores an event only if its key was new there, and `events`
-- needs no unique index at all. site_id leads the key so the schema stays distributable by site (Citus). PostgreSQL 15
-- has no identity columns on partitioned tables: `id` keeps its values and takes new ones from a sequence, and is no
-- longer a key (nothing reads events by id; it stays as the insertion order).
CREATE TABLE events_partitioned (LIKE events INCLUDING DEFAULTS) PARTITION BY RANGE ("timestamp");
CREATE TABLE events_default PARTITION OF events_partitioned DEFAULT;

DO $$
DECLARE
    month date;
BEGIN
    FOR month IN
        SELECT DISTINCT date_trunc('month', "timestamp" AT TIME ZONE 'UTC')::date FROM events
        UNION
        SELECT generate_series(date_trunc('month', now() AT TIME ZONE 'UTC'),
                               date_trunc('month', now() AT TIME ZONE 'UTC') + interval '2 months',
                               interval '1 month')::date
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF events_partitioned FOR VALUES FROM (%L) TO (%L)',
            'events_' || to_char(month, 'YYYY_MM'),
            month::timestamp AT TIME ZONE 'UTC',
            (month + interval '1 month')::timestamp AT TIME ZONE 'UTC'
        );
    END LOOP;
END $$;

INSERT INTO events_partitioned SELECT * FROM events;
DROP TABLE events;
ALTER TABLE events_partitioned RENAME TO events;

CREATE SEQUENCE events_id_seq OWNED BY events.id;
SELECT setval('events_id_seq', coalesce(max(id), 0) + 1, false) FROM events;
ALTER TABLE events ALTER COLUMN id SET DEFAULT nextval('events_id_seq');

CREATE TABLE event_keys (
    site_id text COLLATE "C" NOT NULL,
    event_key uuid NOT NULL,
    PRIMARY KEY (site_id, event_key)
);
INSERT INTO event_keys SELECT site_id, event_key FROM events;
CREATE INDEX events_site_time ON events (site_id, "timestamp");
CREATE INDEX events_site_visitor_time ON events (site_id, visitor, "timestamp") WHERE visitor IS NOT NULL;

-- Since when raw events are complete: retention dropped everything before `since` (NULL: nothing was ever dropped).
-- Reports over earlier periods say so (meta.raw_events_since).
CREATE TABLE events_retention (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    since timestamptz
);
INSERT INTO events_retention (since) VALUES (NULL);

-- The month's partition, made if missing; true if it was made. Rows of that month the default partition holds (posted
-- when the month was outside the writer's window) move into it. Serialized by an advisory lock; the default partition
-- is locked against inserts meanwhile, so none can land there in between the move and the attach.
CREATE FUNCTION ensure_events_partition(day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    month date := date_trunc('month', day)::date;
    name text := 'events_' || to_char(date_trunc('month', day), 'YYYY_MM');
    low timestamptz := month::timestamp AT TIME ZONE 'UTC';
    high timestamptz := (month + interval '1 month')::timestamp AT TIME ZONE 'UTC';
BEGIN
    PERFORM pg_advisory_xact_lock(7021);
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    LOCK TABLE events_default IN SHARE ROW EXCLUSIVE MODE;
    EXECUTE format('CREATE TABLE %I (LIKE events INCLUDING DEFAULTS)', name);
    EXECUTE format(
        'WITH moved AS (DELETE FROM events_default WHERE "timestamp" >= %L AND "timestamp" < %L RETURNING *) '
        'INSERT INTO %I SELECT * FROM moved',
        low, high, name
    );
    EXECUTE format('ALTER TABLE events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', name, low, high);
    RETURN true;
END $$;

-- Retention: drops the monthly partitions that end at or before `horizon`, deletes what the default partition holds
-- from before the end of the newest dropped month, and records that instant as events_retention.since (kept when
-- nothing new was dropped); the keys of what it drops go too (a re-delivery of a dropped event is a new event, and
-- event_keys does not outgrow the events kept). Returns since and the partitions dropped.
CREATE FUNCTION drop_events_before(horizon timestamptz, OUT since timestamptz, OUT dropped text[])
LANGUAGE plpgsql AS $$
DECLARE
    partition record;
BEGIN
    PERFORM pg_advisory_xact_lock(7021);
    dropped := '{}';
    SELECT r.since INTO since FROM events_retention r;
    FOR partition IN
        SELECT c.relname, to_date(substr(c.relname, 8), 'YYYY_MM') AS month
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_[0-9]{4}_[0-9]{2}$'
        ORDER BY 2
    LOOP
        EXIT WHEN ((partition.month + interval '1 month')::timestamp AT TIME ZONE 'UTC') > horizon;
        EXECUTE format(
            'DELETE FROM event_keys k USING %I e WHERE k.site_id = e.site_id AND k.event_key = e.event_key',
            partition.relname
        );
        EXECUTE format('DROP TABLE %I', partition.relname);
        dropped := dropped || partition.relname::text;
        since := greatest(since, (partition.month + interval '1 month')::timestamp AT TIME ZONE 'UTC');
    END LOOP;
    IF since IS NOT NULL THEN
        WITH gone AS (DELETE FROM events_default WHERE "timestamp" < since RETURNING site_id, event_key)
        DELETE FROM event_keys k USING gone WHERE k.site_id = gone.site_id AND k.event_key = gone.event_key;
        UPDATE events_retention SET since = drop_events_before.since;
    END IF;
END $$;
