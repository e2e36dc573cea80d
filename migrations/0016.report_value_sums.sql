-- depends: 0015.report_values
-- A breakdown's sums over its kept days (reports.sql: kept_value_sums) read from the day-ordered index alone: the
-- range's entries and nothing else. Through report_values_key (value first) the scan read every kept day of the
-- site's dimension and filtered out the rest: the busiest site's 30-day path breakdown at 1M events took 11.8 ms
-- for 16,208 of 48,604 entries; through this index 4.6 ms (bench/RESULTS.md, 2026-12-04).
DROP INDEX report_values_top_pageviews;
CREATE INDEX report_values_top_pageviews ON report_values (site_id, dimension, day, pageviews DESC, value)
    INCLUDE (events, visitor_count, user_count);
