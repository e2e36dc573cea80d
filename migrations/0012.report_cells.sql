-- depends: 0011.visit_bounds
-- Report cells (issue 14): what an unfiltered v2 aggregate or time series needs, per site and 15-minute UTC cell, so
-- such a report reads at most one row per cell of its period instead of every event. Every zone offset in use is a
-- multiple of 15 minutes, so every local hour, day, week and month begins on a cell boundary (reports.py checks each
-- bound and reads raw events when one is not). Event columns count the cell's events by event time; visit columns its
-- visits by start time, as store/sql/reports.sql defines them; visitors and users are the cell's distinct 64-bit
-- hashes (hashtextextended, the hash of hash partitioning, kept stable across releases), sorted, so distinct counts
-- over any range of cells are exact (two of n ids share a hash with a probability of about n²/2^65).
-- The writer keeps the cells in the batch's transaction (store/sql/writer.sql: count_cells), an erasure corrects them
-- (store/sql/erasure.sql) and retention keeps them.
CREATE TABLE report_cells (
    site_id text COLLATE "C" NOT NULL,
    cell timestamptz NOT NULL,
    pageviews bigint NOT NULL,
    events bigint NOT NULL,
    visits bigint NOT NULL,
    bounces bigint NOT NULL,
    duration_us bigint NOT NULL,
    visit_pageviews bigint NOT NULL,
    visitors bigint[] NOT NULL,
    users bigint[] NOT NULL,
    PRIMARY KEY (site_id, cell)
);

-- The cell an instant falls in.
CREATE FUNCTION report_cell(instant timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN date_bin('15 minutes', instant, '1970-01-01T00:00:00Z');

-- The sorted distinct union of two hash sets.
CREATE FUNCTION hash_union(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN b <@ a THEN a ELSE ARRAY(SELECT DISTINCT h FROM unnest(a || b) h ORDER BY h) END;

-- Cells are complete from `cells_since` (NULL: from the first event): what retention had dropped before this migration
-- cannot be counted, so reports reaching before it still say they are incomplete.
ALTER TABLE events_retention ADD COLUMN cells_since timestamptz;
UPDATE events_retention SET cells_since = since;

INSERT INTO report_cells
SELECT site_id, report_cell("timestamp"), count(*) FILTER (WHERE event_type = 'page_view'), count(*), 0, 0, 0, 0,
       coalesce(array_agg(DISTINCT hashtextextended(visitor, 0) ORDER BY hashtextextended(visitor, 0))
                    FILTER (WHERE visitor IS NOT NULL), '{}'),
       coalesce(array_agg(DISTINCT hashtextextended(user_id, 0) ORDER BY hashtextextended(user_id, 0))
                    FILTER (WHERE user_id IS NOT NULL), '{}')
FROM events
GROUP BY 1, 2;

UPDATE report_cells c
SET visits = v.visits, bounces = v.bounces, duration_us = v.duration_us, visit_pageviews = v.visit_pageviews
FROM (
    SELECT site_id, report_cell(started_at) AS cell, count(*) AS visits,
           count(*) FILTER (WHERE pageviews = 1 AND events = 1) AS bounces,
           sum((extract(epoch FROM ended_at - started_at) * 1000000)::bigint) AS duration_us,
           sum(pageviews) AS visit_pageviews
    FROM visits
    GROUP BY 1, 2
) v
WHERE c.site_id = v.site_id AND c.cell = v.cell;
