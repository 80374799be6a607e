DROP VIEW IF EXISTS calls_hourly_mv;
ALTER TABLE calls_hourly MODIFY COLUMN cost_usd Decimal(38, 12);
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
    CAST(sum(cost_usd) AS Decimal(38, 12))              AS cost_usd,
    countIf(status = 'error')                           AS errors,
    countIf(pricing_status != 'priced')                 AS unpriced_calls
FROM calls
GROUP BY hour, org_id, team, user_id, app, provider, model;
