-- depends: 0013.report_distincts
-- The report cells' sums in their primary key's index (issue 14), so that a report reads them by an index-only scan:
-- a site's cells lie scattered over the table (the writer inserts every site's cells of a moment together), about two
-- to a page with their hash sets, and a year of a small site's cells read 1,760 pages for 3,480 rows (24 ms warm, 115
-- cold); from the index, 121 pages and 3 ms. A changed sum now makes a new index entry (no HOT update): measured in
-- bench/RESULTS.md with the writer.
ALTER TABLE report_cells
    DROP CONSTRAINT report_cells_pkey,
    ADD CONSTRAINT report_cells_pkey PRIMARY KEY (site_id, cell)
        INCLUDE (pageviews, events, visits, bounces, duration_us, visit_pageviews);
