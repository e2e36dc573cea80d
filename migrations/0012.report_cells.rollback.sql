DROP TABLE report_cells;
DROP FUNCTION hash_union(bigint[], bigint[]);
DROP FUNCTION report_cell(timestamptz);
ALTER TABLE events_retention DROP COLUMN cells_since;
