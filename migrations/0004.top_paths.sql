-- depends: 0003.event_key
-- A day's top paths without sorting all of that site-day's paths: the index gives rows in views order, and an
-- incremental sort breaks ties by path among the first few (bench/RESULTS.md: the day query's p99 grew with the
-- busiest site-days' path counts). Path is left out of the index: at its maximum length in multibyte text it would
-- pass btree's 2,704-byte row limit and make a valid event unwritable. site_path_views gets no such index: its rows
-- are updated by nearly every batch, and the index cost the writer 5 % there, for a growth already within target.
CREATE INDEX daily_path_views_top ON daily_path_views (site_id, day, views DESC);
