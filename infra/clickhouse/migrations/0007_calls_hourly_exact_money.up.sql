-- calls_hourly's money at the scale of calls (cost_usd Decimal(38, 21)): the view cast each
-- insert block's sum to 12 decimals, so what the realtime alerts and `yieldmeter status` read
-- drifted from calls (and from every dbt mart) by up to a billionth of a cent per block.
-- The rows written before are rebuilt from calls at full scale. Run it while nothing inserts
-- into calls (`yieldmeter migrate` runs before the ingest starts): an insert between the
-- rebuild and the new view would be missing from the rollup.
DROP VIEW IF EXISTS calls_hourly_mv;
TRUNCATE TABLE calls_hourly;
ALTER TABLE calls_hourly MODIFY COLUMN cost_usd Decimal(38, 21);

INSERT INTO calls_hourly
SELECT
    toStartOfHour(occurred_at)                          AS hour,
    org_id, team, user_id, app, provider, model,
    count()                                             AS calls,
    sum(input_tokens)                                   AS input_tokens,
    sum(cache_read_tokens)                              AS cache_read_tokens,
    sum(cache_write_tokens)                             AS cache_write_tokens,
    sum(output_tokens)                                  AS output_tokens,
    sum(reasoning_tokens)                               AS reasoning_tokens,
    sum(cost_usd)                                       AS cost_usd,
    countIf(status = 'error')                           AS errors,
    countIf(pricing_status != 'priced')                 AS unpriced_calls
FROM calls FINAL
GROUP BY hour, org_id, team, user_id, app, provider, model;

CREATE MATERIALIZED VIEW IF NOT EXISTS calls_hourly_mv TO calls_hourly AS
SELECT
    toStartOfHour(occurred_at)                          AS hour,
    org_id, team, user_id, app, provider, model,
    count()                                             AS calls,
    sum(input_tokens)                                   AS input_tokens,
    sum(cache_read_tokens)                              AS cache_read_tokens,
    sum(cache_write_tokens)                             AS cache_write_tokens,
    sum(output_tokens)                                  AS output_tokens,
    sum(reasoning_tokens)                               AS reasoning_tokens,
    sum(cost_usd)                                       AS cost_usd,
    countIf(status = 'error')                           AS errors,
    countIf(pricing_status != 'priced')                 AS unpriced_calls
FROM calls
GROUP BY hour, org_id, team, user_id, app, provider, model;
