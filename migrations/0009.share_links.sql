-- depends: 0008.visits
-- Read-only links to one site's dashboard, created and revoked by an operator (`analytics share`). A link is a random
-- token; only its SHA-256 digest is kept, so this table gives no one a working link. Revoking keeps the row (who had
-- a link, and when it stopped working) and the api looks the digest up on every request, so a revoked link stops at
-- once on every api process. Few rows, no site_id in the key: a reference table, not a distributed one.
CREATE TABLE share_links (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id text NOT NULL,
    token_digest bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
