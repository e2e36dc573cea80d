-- depends: 0017.report_value_weeks
-- The kept values' visitor and user hashes packed 8 bytes each (int8send, big-endian) in a bytea instead of a
-- bigint[]: a breakdown reads them as they are stored, where a bigint[] went through array_send, one call and one
-- allocation an element. The busiest site's 30-day path breakdown at 10M events read 1.9 MB of its ten values'
-- hashes in 7.4 ms; packed, 1.3 MB in 2.6 ms (bench/RESULTS.md, 2026-12-04). Every kept row is carried over.
CREATE FUNCTION packed_hashes(hashes bigint[]) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (SELECT coalesce(string_agg(int8send(h), ''::bytea), ''::bytea) FROM unnest(hashes) h);

ALTER TABLE report_values
    ALTER COLUMN visitors TYPE bytea USING packed_hashes(visitors),
    ALTER COLUMN users TYPE bytea USING packed_hashes(users);
-- Hashes do not compress.
ALTER TABLE report_values ALTER COLUMN visitors SET STORAGE EXTERNAL, ALTER COLUMN users SET STORAGE EXTERNAL;
