DROP TABLE report_value_weeks_kept;
DROP TABLE report_value_weeks;
