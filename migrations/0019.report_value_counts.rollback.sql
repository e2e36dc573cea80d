DROP TABLE report_value_counts;
