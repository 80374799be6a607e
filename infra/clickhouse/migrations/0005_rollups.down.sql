DROP VIEW IF EXISTS calls_hourly_mv;
DROP TABLE IF EXISTS calls_hourly;
