-- depends: 0004.top_paths
-- An empty path or user_id now means absent, as null does (the ingest contract). Rows stored before that get the
-- same treatment: '' becomes NULL and the key is recomputed, so a client's retry of an old event still maps to its
-- row. Rows that thereby become one event (the same event sent once with '' and once with null) keep one row, and
-- the rollups of every site that had such rows are counted again from its events.
CREATE TEMP TABLE blank_events ON COMMIT DROP AS
SELECT id, site_id,
       event_key(site_id, event_type, nullif(user_id, ''), nullif(path, ''),
                 (extract(epoch FROM "timestamp") * 1000000)::bigint) AS new_key
FROM events
WHERE path = '' OR user_id = '';

-- Keep a twin stored with nulls if there is one, else the first of the rows that become the same event.
DELETE FROM events
USING blank_events blank
WHERE events.id = blank.id
  AND (EXISTS (SELECT 1 FROM events twin WHERE twin.event_key = blank.new_key)
       OR EXISTS (SELECT 1 FROM blank_events earlier WHERE earlier.new_key = blank.new_key AND earlier.id < blank.id));

UPDATE events
SET path = nullif(events.path, ''), user_id = nullif(events.user_id, ''), event_key = blank.new_key
FROM blank_events blank
WHERE events.id = blank.id;

CREATE TEMP TABLE blank_sites ON COMMIT DROP AS SELECT DISTINCT site_id FROM blank_events;

DELETE FROM daily_totals WHERE site_id IN (SELECT site_id FROM blank_sites);
DELETE FROM daily_users WHERE site_id IN (SELECT site_id FROM blank_sites);
DELETE FROM daily_path_views WHERE site_id IN (SELECT site_id FROM blank_sites);
DELETE FROM site_totals WHERE site_id IN (SELECT site_id FROM blank_sites);
DELETE FROM site_users WHERE site_id IN (SELECT site_id FROM blank_sites);
DELETE FROM site_path_views WHERE site_id IN (SELECT site_id FROM blank_sites);

CREATE TEMP VIEW recounted_views AS
SELECT site_id, ("timestamp" AT TIME ZONE 'UTC')::date AS day, path, user_id
FROM events
WHERE event_type = 'page_view' AND site_id IN (SELECT site_id FROM blank_sites);

INSERT INTO daily_users (site_id, day, user_md5)
SELECT DISTINCT site_id, day, md5(user_id)::uuid FROM recounted_views WHERE user_id IS NOT NULL;

INSERT INTO daily_totals (site_id, day, views, users)
SELECT site_id, day, count(*), count(DISTINCT user_id) FROM recounted_views GROUP BY 1, 2;

INSERT INTO daily_path_views (site_id, day, path_md5, path, views)
SELECT site_id, day, md5(path)::uuid, path, count(*) FROM recounted_views WHERE path IS NOT NULL GROUP BY 1, 2, 4;

INSERT INTO site_users (site_id, user_md5)
SELECT DISTINCT site_id, md5(user_id)::uuid FROM recounted_views WHERE user_id IS NOT NULL;

INSERT INTO site_totals (site_id, views, users)
SELECT site_id, count(*), count(DISTINCT user_id) FROM recounted_views GROUP BY 1;

INSERT INTO site_path_views (site_id, path_md5, path, views)
SELECT site_id, md5(path)::uuid, path, count(*) FROM recounted_views WHERE path IS NOT NULL GROUP BY 1, 3;

DROP VIEW recounted_views;
