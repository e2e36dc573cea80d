-- Share links (migrations/0009.share_links.sql): tokens are looked up by their SHA-256 digest only.

-- name: create_share
INSERT INTO share_links (site_id, token_digest) VALUES ($1, $2) RETURNING id, site_id, created_at, revoked_at;

-- name: list_shares
SELECT id, site_id, created_at, revoked_at FROM share_links ORDER BY id;

-- name: revoke_share
-- Idempotent: a second revoke keeps the first time.
UPDATE share_links SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
RETURNING id, site_id, created_at, revoked_at;

-- name: shared_site
-- The site a live link shows; none for an unknown or revoked one. A unique-index probe, on every shared request.
SELECT site_id FROM share_links WHERE token_digest = $1 AND revoked_at IS NULL;
