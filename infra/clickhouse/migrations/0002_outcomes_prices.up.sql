-- Outcomes: the business events the spend is judged against.
-- Grain: one row per outcome_id (a re-delivered outcome collapses on merge; read with FINAL
-- or through the dbt staging model, which deduplicates).
-- Writer: the warehouse ingest, from usage.outcomes (validated against the contract there;
-- invalid records go to dead_letters).
-- ORDER BY (org_id, app, outcome_type, outcome_id): analysts slice by org, app and outcome
-- type; outcome_id last makes the key the outcome's identity for ReplacingMergeTree.
CREATE TABLE IF NOT EXISTS outcomes
(
    outcome_id      String,
    occurred_at     DateTime64(3, 'UTC'),
    org_id          LowCardinality(String),
    team            LowCardinality(String),
    user_id         String,
    app             LowCardinality(String),
    session_id      String DEFAULT '',
    trace_id        String DEFAULT '',
    outcome_type    LowCardinality(String),
    success         Bool,
    -- Nullable on purpose: "no value reported" is not "worth $0".
    value_usd       Nullable(Decimal(38, 9)),
    attributes      Map(String, String),
    schema_version  UInt8,
    _topic          LowCardinality(String),
    _partition      Int32,
    _offset         Int64,
    _timestamp      DateTime64(3, 'UTC'),
    _ingested_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (org_id, app, outcome_type, outcome_id)
COMMENT 'One row per business outcome (usage.outcomes), deduplicated on outcome_id.';

-- Prices: the catalog history, as published to usage.prices (seed + user overrides).
-- Grain: one row per price_id (provider/model/service_tier@effective_from).
-- Writer: the warehouse ingest, from usage.prices. The Flink pricing job reads the topic,
-- not this table; this copy is for analysts and the repricing audit.
-- ORDER BY (provider, model, service_tier, effective_from): a model's price history in order.
CREATE TABLE IF NOT EXISTS prices
(
    price_id                      String,
    provider                      LowCardinality(String),
    model                         String,
    service_tier                  LowCardinality(String),
    effective_from                DateTime64(3, 'UTC'),
    currency                      LowCardinality(String),
    input_per_mtok                Decimal(38, 12),
    output_per_mtok               Decimal(38, 12),
    -- Nullable on purpose: null means "falls back" (cache -> input rate, reasoning -> output
    -- rate, *_above -> the base rate), which is not the same as a rate of zero.
    cache_read_per_mtok           Nullable(Decimal(38, 12)),
    cache_write_per_mtok          Nullable(Decimal(38, 12)),
    reasoning_per_mtok            Nullable(Decimal(38, 12)),
    tier_threshold_input_tokens   Nullable(UInt64),
    input_above_per_mtok          Nullable(Decimal(38, 12)),
    output_above_per_mtok         Nullable(Decimal(38, 12)),
    cache_read_above_per_mtok     Nullable(Decimal(38, 12)),
    cache_write_above_per_mtok    Nullable(Decimal(38, 12)),
    reasoning_above_per_mtok      Nullable(Decimal(38, 12)),
    source                        LowCardinality(String),
    schema_version                UInt8,
    _topic                        LowCardinality(String),
    _partition                    Int32,
    _offset                       Int64,
    _timestamp                    DateTime64(3, 'UTC'),
    _ingested_at                  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(_offset)
ORDER BY (provider, model, service_tier, effective_from)
COMMENT 'One row per price in the catalog history (usage.prices); the latest publication of a price_id wins.';

-- Org discounts: negotiated discounts, published to usage.prices beside the prices
-- (key prefix discount/). Grain: one row per (org_id, provider, effective_from); provider
-- '*' = every provider of the org. Writer: the warehouse ingest. Flink applies them when
-- pricing; this copy lets analysts see list versus discounted cost.
CREATE TABLE IF NOT EXISTS org_discounts
(
    org_id          LowCardinality(String),
    provider        LowCardinality(String) DEFAULT '*',
    discount_pct    Decimal(9, 6),
    effective_from  DateTime64(3, 'UTC'),
    source          LowCardinality(String),
    schema_version  UInt8,
    _topic          LowCardinality(String),
    _partition      Int32,
    _offset         Int64,
    _timestamp      DateTime64(3, 'UTC'),
    _ingested_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(_offset)
ORDER BY (org_id, provider, effective_from)
COMMENT 'One row per negotiated org discount (usage.prices, key discount/...).';
