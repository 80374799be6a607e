-- calls_hourly: spend and tokens per hour, org, team, user, app, provider and model.
-- Grain: one row per (hour, org_id, team, user_id, app, provider, model) after merges; rows
-- of one key are summed by SummingMergeTree in the background, so ALWAYS read it with sum()
-- ... GROUP BY. Writer: calls_hourly_mv, on every insert into calls. Safe under re-delivery
-- because the ingest never inserts a Kafka record into calls twice (see yieldmeter/ingest.py).
-- Used by the alert rules and the report: an hour of a whole org is a few hundred rows here
-- instead of every call.
-- ORDER BY (hour, org_id, team, user_id, app, provider, model): the time range first, since
-- every reader asks for "the last N hours" of some slice.
CREATE TABLE IF NOT EXISTS calls_hourly
(
    hour               DateTime('UTC'),
    org_id             LowCardinality(String),
    team               LowCardinality(String),
    user_id            String,
    app                LowCardinality(String),
    provider           LowCardinality(String),
    model              LowCardinality(String),
    calls              UInt64,
    input_tokens       UInt64,
    cache_read_tokens  UInt64,
    cache_write_tokens UInt64,
    output_tokens      UInt64,
    reasoning_tokens   UInt64,
    cost_usd           Decimal(38, 12),
    errors             UInt64,
    unpriced_calls     UInt64
)
ENGINE = SummingMergeTree
ORDER BY (hour, org_id, team, user_id, app, provider, model)
COMMENT 'Hourly sums of calls per org, team, user, app and model; read with sum() GROUP BY.';

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
