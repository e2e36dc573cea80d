-- depends: 0014.report_cell_sums
-- Breakdown rollups (issue 14): per site, past UTC day, dimension and value, the events' page views and events and
-- their distinct visitor and user hashes (as the report cells hash them), so that an unfiltered breakdown over many
-- days reads a row per day and value instead of every event. The distinct keeper (analytics/stats/keeper.py) counts
-- them from raw events, a day and a chunk of sites at a time (store/sql/keeper.sql: `keep_day_values`); reports
-- (analytics/stats/values.py) use a day's rows while its signature holds and read raw events for the rest.
CREATE TABLE report_values (
    site_id text COLLATE "C" NOT NULL,
    day timestamptz NOT NULL,
    dimension text COLLATE "C" NOT NULL,
    value text COLLATE "C",
    pageviews bigint NOT NULL,
    events bigint NOT NULL,
    visitor_count integer NOT NULL,
    user_count integer NOT NULL,
    visitors bigint[] NOT NULL,
    users bigint[] NOT NULL
);
-- A value's days, for the sums over a range (an index-only scan once vacuumed) and a few values' hash sets.
CREATE UNIQUE INDEX report_values_key ON report_values (site_id, dimension, value, day)
    INCLUDE (pageviews, events, visitor_count, user_count) NULLS NOT DISTINCT;
-- One day's values in the contract's order by page views and by visitors: a top-N of a day reads N entries, however
-- many values tie (anyone can post random paths).
CREATE INDEX report_values_top_pageviews ON report_values (site_id, dimension, day, pageviews DESC, value);
CREATE INDEX report_values_top_visitors ON report_values (site_id, dimension, day, visitor_count DESC, value);
-- Hashes do not compress.
ALTER TABLE report_values ALTER COLUMN visitors SET STORAGE EXTERNAL, ALTER COLUMN users SET STORAGE EXTERNAL;

-- What a site-day's values were counted from: they hold while the report cells over the window still sum to
-- `window_events`. The window is the day widened by the site's longest visit and the 30-minute idle gap, then to
-- whole cells: an event that changes any visit holding an event of the day (its source, country, entry page) lies
-- in it, and so does every event of the day. `value_counts` maps each dimension to its number of values.
CREATE TABLE report_value_days (
    site_id text COLLATE "C" NOT NULL,
    day timestamptz NOT NULL,
    window_starts timestamptz NOT NULL,
    window_ends timestamptz NOT NULL,
    window_events bigint NOT NULL,
    value_counts jsonb NOT NULL,
    PRIMARY KEY (site_id, day)
);
