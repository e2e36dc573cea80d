-- depends: 0006.enriched_events
-- A day's top paths when many of its paths tie on views (anyone can post random paths): 0004's index gave a
-- site-day's paths in views order only, so the incremental sort by path read every path of the tie (200,000 paths of
-- one view each: p99 31 ms a day request, 0.96 ms with this index; bench/RESULTS.md "v1 stats with tied paths"). The
-- index now also holds the path's first 64 characters, which the stats query sorts by before the whole path. In
-- COLLATE "C" (left() keeps the column's collation) text compares as UTF-8 bytes, whose order is code-point order and
-- in which no character's encoding is a prefix of another's: paths whose prefixes differ compare as the prefixes do,
-- and only paths sharing a prefix are left to sort.
-- Not the whole path: 2,048 four-byte characters beside a 256-character site id pass btree's 2,704-byte row limit.
-- Not longer: no prefix breaks the tie of paths made to share it, and every row of such a tie pays for computing it
-- (200,000 paths sharing 300 characters: p50 29 ms before, 74 ms with 64 characters, 106 ms with 128). Not shorter:
-- routes before an id (/api/v1/organizations/123/projects/...) pass 32 characters.
-- Same name as 0004's index, which this one replaces (the writer kept its rows/s: 1.00x). site_path_views still gets
-- none: its rows change in nearly every batch and the same index there cost the writer 6-15 % of its rows/s, the
-- system's sustained capacity, while a site's all-time top paths read all its paths, tied or not (200,000: ~45 ms).
DROP INDEX daily_path_views_top;
CREATE INDEX daily_path_views_top ON daily_path_views (site_id, day, views DESC, left(path, 64));
