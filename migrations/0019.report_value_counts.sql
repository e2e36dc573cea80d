-- depends: 0018.report_value_hashes
-- Distinct counts of a breakdown's values over a range, kept once the range is over (issue 14): a multi-day
-- breakdown counts a value's visitors or users as the union of its days' hashes, which for the busiest site's
-- biggest values is 100,000 hashes and more a request. A report keeps each value it counted, with the events the
-- value summed to over the range; the next request for the same range uses a kept count while that sum is unchanged
-- (a late event or an erasure changes it, and an erasure forgets the site's rows besides), and counts the rest
-- (analytics/stats/values.py). Derived data: dropping the table loses nothing but the next requests' time.
CREATE TABLE report_value_counts (
    site_id text COLLATE "C" NOT NULL,
    dimension text COLLATE "C" NOT NULL,
    starts timestamptz NOT NULL,
    ends timestamptz NOT NULL,
    value text COLLATE "C",
    events bigint NOT NULL,
    visitors integer,
    users integer
);
CREATE UNIQUE INDEX report_value_counts_key ON report_value_counts (site_id, dimension, starts, ends, value)
    INCLUDE (events, visitors, users) NULLS NOT DISTINCT;
