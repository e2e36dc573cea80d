-- depends: 0005.empty_strings
-- Ingest v2: what an event carries besides v1's five fields. Every column is nullable with no default, so adding
-- them rewrites nothing: stored events keep every value (their new columns are NULL: no visitor, no source, ...),
-- and records queued by the previous version are written with NULLs there too. COLLATE "C": breakdowns sort
-- their ties by code point, as top paths do.
ALTER TABLE events
    ADD COLUMN event_id text COLLATE "C",
    ADD COLUMN visitor text COLLATE "C",
    ADD COLUMN referrer text COLLATE "C",
    ADD COLUMN source text COLLATE "C",
    ADD COLUMN utm_source text COLLATE "C",
    ADD COLUMN utm_medium text COLLATE "C",
    ADD COLUMN utm_campaign text COLLATE "C",
    ADD COLUMN utm_term text COLLATE "C",
    ADD COLUMN utm_content text COLLATE "C",
    ADD COLUMN browser text COLLATE "C",
    ADD COLUMN browser_version text COLLATE "C",
    ADD COLUMN os text COLLATE "C",
    ADD COLUMN os_version text COLLATE "C",
    ADD COLUMN device text COLLATE "C",
    ADD COLUMN country text COLLATE "C",
    ADD COLUMN props jsonb;
