DROP TABLE report_distincts;
