-- depends: 0012.report_cells
-- The distinct visitors and users of report ranges (issue 14), counted once from the report cells' hash sets and kept:
-- a past day's, week's or month's distinct count is then one row however many visitors it had, and a longer range's
-- is the union of its days' sets (analytics/stats/sketch.py: the hashes while at most 10,000, else HyperLogLog
-- registers, which make the union an estimate within 2 %). Reports fill the table as they count (store/sql/reports.sql)
-- and only for ranges already over; a row holds while its range's cells still sum to `events`. Cells only gain events
-- outside an erasure, and a late event adds to its range's sum; an erasure, which can take hashes out of cells whose
-- events retention dropped, deletes the site's rows (store/sql/erasure.sql: `forget_distincts`).
CREATE TABLE report_distincts (
    site_id text COLLATE "C" NOT NULL,
    starts timestamptz NOT NULL,
    ends timestamptz NOT NULL,
    events bigint NOT NULL,
    visitors bigint NOT NULL,
    users bigint NOT NULL,
    visitors_exact boolean NOT NULL,
    users_exact boolean NOT NULL,
    visitor_set bytea NOT NULL,
    user_set bytea NOT NULL,
    PRIMARY KEY (site_id, starts, ends)
);
-- Hashes and registers do not compress: storing them as they are saves pglz its tries on every write and read.
ALTER TABLE report_distincts ALTER COLUMN visitor_set SET STORAGE EXTERNAL, ALTER COLUMN user_set SET STORAGE EXTERNAL;
