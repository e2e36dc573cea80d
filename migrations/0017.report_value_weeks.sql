-- depends: 0016.report_value_sums
-- Week sums of the kept values (issue 14): per site, ISO week (Monday, UTC) and dimension, each value's page views and
-- events and its distinct visitors and users over the week, without the hashes. A breakdown's sums over a 30-day
-- range read a row per value for each whole kept week and per day only at its ends: the busiest site's 30-day path
-- breakdown at 10M events read 50,482 day entries for its 2,000 values (bench/RESULTS.md, 2026-12-04). The distinct
-- keeper builds a week once its seven days are kept (store/sql/keeper.sql: `keep_week_values`); keeping one of its
-- days again, or an erasure, forgets the week; a report uses a week only while its seven days hold
-- (analytics/stats/values.py).
CREATE TABLE report_value_weeks (
    site_id text COLLATE "C" NOT NULL,
    week timestamptz NOT NULL,
    dimension text COLLATE "C" NOT NULL,
    value text COLLATE "C",
    pageviews bigint NOT NULL,
    events bigint NOT NULL,
    visitor_count integer NOT NULL,
    user_count integer NOT NULL
);
CREATE UNIQUE INDEX report_value_weeks_key ON report_value_weeks (site_id, dimension, week, value)
    INCLUDE (pageviews, events, visitor_count, user_count) NULLS NOT DISTINCT;

-- The weeks kept per site: a week's values are all there when it is here (one transaction makes both).
CREATE TABLE report_value_weeks_kept (
    site_id text COLLATE "C" NOT NULL,
    week timestamptz NOT NULL,
    PRIMARY KEY (site_id, week)
);
