-- depends: 0010.partitioned_events
-- The longest visit each site has had, kept by the writer as it rebuilds visits (store/sql/writer.sql), so that a
-- report joining events to their visits reads only the visits that can hold an event of the period: one that holds an
-- event at or after the period's start began at most `longest` before it. Without it that join read every visit the
-- site ever had (a busiest site's 30-day source breakdown: all 670,000 of its visits for 223,000 that matter). It only
-- grows: an erasure that shortens a visit leaves it a bound, not the maximum, which keeps every answer exact.
CREATE TABLE site_visit_bounds (
    site_id text COLLATE "C" PRIMARY KEY,
    longest interval NOT NULL
);
INSERT INTO site_visit_bounds (site_id, longest)
SELECT site_id, max(ended_at - started_at) FROM visits GROUP BY site_id;
