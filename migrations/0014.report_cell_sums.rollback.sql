ALTER TABLE report_cells DROP CONSTRAINT report_cells_pkey, ADD CONSTRAINT report_cells_pkey PRIMARY KEY (site_id, cell);
