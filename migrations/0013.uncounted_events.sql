-- depends: 0012.report_cells
-- Counting out of the batch (issue 16): the writer's batch transaction stores the new events and lists each here; a
-- counting step (analytics/writer/counting.py) takes many batches' rows at once, deletes them and counts them into
-- the rollups, visits and report cells in one transaction. Deleted and counted together, a row is counted exactly
-- once, whatever crashes; counted over many batches, each rollup row is updated once per step instead of once per
-- batch. Only the columns the counting reads; no index (a step takes any rows of its bucket of sites).
-- Nothing is waiting at upgrade: the previous version counted each batch in its own transaction.
CREATE TABLE uncounted_events (
    site_id text COLLATE "C" NOT NULL,
    event_type text COLLATE "C" NOT NULL,
    day date NOT NULL,
    path text COLLATE "C",
    user_id text COLLATE "C",
    visitor text COLLATE "C",
    "timestamp" timestamptz NOT NULL
);
