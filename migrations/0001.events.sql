-- Events as delivered; the unique index makes re-delivery and client retries harmless.
-- COLLATE "C" on the key's text columns: a faster merge, and ties in top paths sort by code point (the contract).
CREATE TABLE events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id text COLLATE "C" NOT NULL,
    event_type text COLLATE "C" NOT NULL,
    path text COLLATE "C",
    user_id text COLLATE "C",
    "timestamp" timestamptz NOT NULL,
    inserted_at timestamptz NOT NULL DEFAULT now()
);

-- The idempotency key (site_id, event_type, user_id, path, timestamp), NULLs equal. path and user_id enter as md5:
-- at their contract maximums in multibyte text the plain columns exceed btree's 2704-byte row limit.
CREATE UNIQUE INDEX events_idempotency_key ON events
    (site_id, event_type, md5(user_id), md5(path), "timestamp") NULLS NOT DISTINCT;

CREATE INDEX events_site_type_time ON events (site_id, event_type, "timestamp");
