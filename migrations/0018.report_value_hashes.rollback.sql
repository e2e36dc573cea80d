CREATE FUNCTION unpacked_hashes(packed bytea) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY(
    SELECT ('x' || encode(substring(packed FROM 8 * i + 1 FOR 8), 'hex'))::bit(64)::bigint
    FROM generate_series(0, length(packed) / 8 - 1) i
    ORDER BY 1
);
ALTER TABLE report_values
    ALTER COLUMN visitors TYPE bigint[] USING unpacked_hashes(visitors),
    ALTER COLUMN users TYPE bigint[] USING unpacked_hashes(users);
ALTER TABLE report_values ALTER COLUMN visitors SET STORAGE EXTERNAL, ALTER COLUMN users SET STORAGE EXTERNAL;
DROP FUNCTION unpacked_hashes(bytea);
DROP FUNCTION packed_hashes(bigint[]);
