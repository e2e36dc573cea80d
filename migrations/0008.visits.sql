-- depends: 0007.tie_order
-- Visits (README "Reporting API v2"): one visitor's events with gaps of at most 30 minutes by event time, kept by
-- the writer from raw events (analytics/store/sql/writer.sql: merge), so a visit is always what a recomputation
-- from the stored events gives, whatever order its events arrived in.

-- A v1 event's visitor is its user: what ingest v2 stores for an event that names one. Rows without a user stay
-- without a visitor (pre-v2 anonymous events carry nothing to tell their visitors apart).
UPDATE events SET visitor = user_id WHERE visitor IS NULL AND user_id IS NOT NULL;

-- A visit's dimensions are its first event's; entry and exit pages its first and last page views' paths.
CREATE TABLE visits (
    site_id text COLLATE "C" NOT NULL,
    visitor text COLLATE "C" NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at timestamptz NOT NULL,
    pageviews integer NOT NULL,
    events integer NOT NULL,
    entry_page text COLLATE "C",
    exit_page text COLLATE "C",
    referrer text COLLATE "C",
    source text COLLATE "C",
    utm_source text COLLATE "C",
    utm_medium text COLLATE "C",
    utm_campaign text COLLATE "C",
    utm_term text COLLATE "C",
    utm_content text COLLATE "C",
    country text COLLATE "C",
    device text COLLATE "C",
    browser text COLLATE "C",
    browser_version text COLLATE "C",
    os text COLLATE "C",
    os_version text COLLATE "C",
    PRIMARY KEY (site_id, visitor, started_at)
);
-- Reports select visits by when they started.
CREATE INDEX visits_site_start ON visits (site_id, started_at);

-- Reports scan one site's events by time, whatever their type (the v1 index leads with the type, and v1 stats
-- read rollups only); the writer re-reads a visitor's recent events to rebuild their visits.
CREATE INDEX events_site_time ON events (site_id, "timestamp");
CREATE INDEX events_site_visitor_time ON events (site_id, visitor, "timestamp") WHERE visitor IS NOT NULL;
DROP INDEX events_site_type_time;

INSERT INTO visits
SELECT site_id, visitor, ts, last_at, pageviews, events, pages[1], pages[cardinality(pages)], referrer, source,
       utm_source, utm_medium, utm_campaign, utm_term, utm_content, country, device, browser, browser_version, os,
       os_version
FROM (
    -- A visit's first event, which gives the visit its dimensions, with what the whole visit adds up to; every
    -- window shares one sort.
    SELECT *, row_number() OVER visit_order AS position,
           max(ts) OVER whole_visit AS last_at,
           count(*) FILTER (WHERE event_type = 'page_view') OVER whole_visit AS pageviews,
           count(*) OVER whole_visit AS events,
           array_agg(path) FILTER (WHERE event_type = 'page_view') OVER whole_visit AS pages
    FROM (
        SELECT *, count(*) FILTER (WHERE starts_visit) OVER (PARTITION BY site_id, visitor ORDER BY ts, event_key)
                      AS visit
        FROM (
            SELECT e.*, e."timestamp" AS ts,
                   e."timestamp" - lag(e."timestamp") OVER (PARTITION BY e.site_id, e.visitor
                                                            ORDER BY e."timestamp", e.event_key)
                       > interval '30 minutes' IS NOT FALSE AS starts_visit
            FROM events e
            WHERE e.visitor IS NOT NULL
        ) marked
    ) numbered
    WINDOW visit_order AS (PARTITION BY site_id, visitor, visit ORDER BY ts, event_key),
           whole_visit AS (visit_order ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
) visits_and_firsts
WHERE position = 1;
