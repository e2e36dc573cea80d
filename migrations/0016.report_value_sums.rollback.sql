DROP INDEX report_values_top_pageviews;
CREATE INDEX report_values_top_pageviews ON report_values (site_id, dimension, day, pageviews DESC, value);
