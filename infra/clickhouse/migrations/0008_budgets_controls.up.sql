-- Budgets: the spend budgets as published to usage.budgets (`yieldmeter budgets set`).
-- Grain: one row per budget_id (kind/scope/period), the latest publication winning; a deleted
-- budget (a tombstone on the topic) is a row with is_deleted = 1, which FINAL leaves out.
-- Writer: the warehouse ingest, which checks each record against the Budget contract
-- (yieldmeter/budgets.py; invalid ones go to dead_letters). The controls job reads the topic;
-- dbt's budget marts read this table (stg_budgets), so both apply the same budgets.
-- Scope fields: '' = every team / user / app / key of the org.
-- ORDER BY budget_id: the budget's identity, for ReplacingMergeTree.
CREATE TABLE IF NOT EXISTS budgets
(
    budget_id            String,
    kind                 LowCardinality(String),
    org_id               LowCardinality(String),
    team                 String,
    user_id              String,
    app                  String,
    api_key              String,
    outcome_type         LowCardinality(String),
    period               LowCardinality(String),
    time_zone            LowCardinality(String),
    limit_usd            Decimal(21, 9),
    warn_at_pct          Decimal(7, 4),
    action               LowCardinality(String),
    throttle_per_minute  UInt32,
    is_deleted           UInt8,
    schema_version       UInt8,
    _topic               LowCardinality(String),
    _partition           Int32,
    _offset              Int64,
    _timestamp           DateTime64(3, 'UTC'),
    _ingested_at         DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(_offset, is_deleted)
ORDER BY budget_id
COMMENT 'One row per spend budget (usage.budgets); read with FINAL: deleted budgets drop out.';

-- Controls: the controls job's decision per budget (usage.controls), for the alert rules and
-- analysts. Grain: one row per budget_id, the latest decision winning (the topic carries many
-- per budget; a withdrawn control is a row with is_deleted = 1). Money exact, as on the topic.
-- ORDER BY budget_id: the control's identity, for ReplacingMergeTree.
CREATE TABLE IF NOT EXISTS controls
(
    budget_id            String,
    org_id               LowCardinality(String),
    team                 String,
    user_id              String,
    app                  String,
    api_key              String,
    period               LowCardinality(String),
    time_zone            LowCardinality(String),
    period_start         DateTime64(3, 'UTC'),
    period_end           DateTime64(3, 'UTC'),
    state                LowCardinality(String),
    action               LowCardinality(String),
    limit_usd            Decimal(21, 9),
    spent_usd            Decimal(38, 21),
    remaining_usd        Decimal(38, 21),
    warn_at_pct          Decimal(7, 4),
    throttle_per_minute  UInt32,
    calls                UInt64,
    unpriced_calls       UInt64,
    reason               String,
    updated_at           DateTime64(3, 'UTC'),
    is_deleted           UInt8,
    schema_version       UInt8,
    _topic               LowCardinality(String),
    _partition           Int32,
    _offset              Int64,
    _timestamp           DateTime64(3, 'UTC'),
    _ingested_at         DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(_offset, is_deleted)
ORDER BY budget_id
COMMENT 'One row per budget: its latest control (usage.controls); read with FINAL.';
