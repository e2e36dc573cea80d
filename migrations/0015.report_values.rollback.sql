DROP TABLE report_value_days;
DROP TABLE report_values;
