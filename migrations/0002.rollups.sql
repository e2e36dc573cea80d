-- depends: 0001.events
-- Rollups: what stats read, so a stats query costs the same at 10 million events as at 100. The writer maintains
-- them in the transaction that merges a batch, from the rows the merge actually inserted (a re-delivered batch
-- inserts nothing and so counts nothing). Paths and user ids are keyed by md5: at their maximum lengths in
-- multibyte text the plain values exceed the btree row limit.

-- Per site and UTC day: page views and distinct users (counted when a (site, day, user) row is first inserted).
CREATE TABLE daily_totals (
    site_id text COLLATE "C" NOT NULL,
    day date NOT NULL,
    views bigint NOT NULL,
    users bigint NOT NULL,
    PRIMARY KEY (site_id, day)
);

CREATE TABLE daily_users (
    site_id text COLLATE "C" NOT NULL,
    day date NOT NULL,
    user_md5 uuid NOT NULL,
    PRIMARY KEY (site_id, day, user_md5)
);

CREATE TABLE daily_path_views (
    site_id text COLLATE "C" NOT NULL,
    day date NOT NULL,
    path_md5 uuid NOT NULL,
    path text COLLATE "C" NOT NULL,
    views bigint NOT NULL,
    PRIMARY KEY (site_id, day, path_md5)
);

-- All time per site: distinct users cannot be summed from daily distinct counts, so they have their own set.
CREATE TABLE site_totals (
    site_id text COLLATE "C" PRIMARY KEY,
    views bigint NOT NULL,
    users bigint NOT NULL
);

CREATE TABLE site_users (
    site_id text COLLATE "C" NOT NULL,
    user_md5 uuid NOT NULL,
    PRIMARY KEY (site_id, user_md5)
);

CREATE TABLE site_path_views (
    site_id text COLLATE "C" NOT NULL,
    path_md5 uuid NOT NULL,
    path text COLLATE "C" NOT NULL,
    views bigint NOT NULL,
    PRIMARY KEY (site_id, path_md5)
);

-- Backfill from events already stored.
INSERT INTO daily_users (site_id, day, user_md5)
SELECT DISTINCT site_id, ("timestamp" AT TIME ZONE 'UTC')::date, md5(user_id)::uuid
FROM events WHERE event_type = 'page_view' AND user_id IS NOT NULL;

INSERT INTO daily_totals (site_id, day, views, users)
SELECT site_id, ("timestamp" AT TIME ZONE 'UTC')::date, count(*), count(DISTINCT user_id)
FROM events WHERE event_type = 'page_view'
GROUP BY 1, 2;

INSERT INTO daily_path_views (site_id, day, path_md5, path, views)
SELECT site_id, ("timestamp" AT TIME ZONE 'UTC')::date, md5(path)::uuid, path, count(*)
FROM events WHERE event_type = 'page_view' AND path IS NOT NULL
GROUP BY site_id, ("timestamp" AT TIME ZONE 'UTC')::date, path;

INSERT INTO site_users (site_id, user_md5)
SELECT DISTINCT site_id, md5(user_id)::uuid
FROM events WHERE event_type = 'page_view' AND user_id IS NOT NULL;

INSERT INTO site_totals (site_id, views, users)
SELECT site_id, count(*), count(DISTINCT user_id)
FROM events WHERE event_type = 'page_view'
GROUP BY 1;

INSERT INTO site_path_views (site_id, path_md5, path, views)
SELECT site_id, md5(path)::uuid, path, count(*)
FROM events WHERE event_type = 'page_view' AND path IS NOT NULL
GROUP BY site_id, path;
