-- Calls: every LLM call, priced, as the Flink pipeline job wrote it to usage.priced.
-- Grain: one row per event_id. The job deduplicates event_ids; the ingest never stores a
-- Kafka record twice; ReplacingMergeTree collapses anything that still slips through.
-- Writer: the warehouse ingest, from usage.priced.
-- Money: exact decimals as the job computed them (list price, discount, per token type);
-- an unpriced call has pricing_status 'unpriced' (or 'unpriced_late') and costs 0 here, so
-- every total can say how much of it is unpriced.
-- ORDER BY (org_id, team, app, toStartOfHour(occurred_at), event_id): spend questions slice
-- by org, team and app over time; event_id last makes the key the call's identity.
CREATE TABLE IF NOT EXISTS calls
(
    event_id              String,
    occurred_at           DateTime64(3, 'UTC'),
    org_id                LowCardinality(String),
    team                  LowCardinality(String),
    user_id               String,
    app                   LowCardinality(String),
    feature               LowCardinality(String) DEFAULT '',
    provider              LowCardinality(String),
    request_model         LowCardinality(String),
    response_model        LowCardinality(String),
    model                 LowCardinality(String),
    operation             LowCardinality(String),
    service_tier          LowCardinality(String),
    input_tokens          UInt64,
    cache_read_tokens     UInt64,
    cache_write_tokens    UInt64,
    output_tokens         UInt64,
    reasoning_tokens      UInt64,
    session_id            String DEFAULT '',
    session_key           String,
    trace_id              String DEFAULT '',
    latency_ms            UInt64 DEFAULT 0,
    status                LowCardinality(String),
    error_type            LowCardinality(String) DEFAULT '',
    retry_of              String DEFAULT '',
    tool_calls            UInt32,
    attributes            Map(String, String),
    pricing_status        LowCardinality(String),
    price_id              String DEFAULT '',
    is_context_tier       Bool DEFAULT false,
    discount_id           String DEFAULT '',
    discount_pct          Decimal(9, 6) DEFAULT 0,
    cost_input_usd        Decimal(38, 15) DEFAULT 0,
    cost_cache_read_usd   Decimal(38, 15) DEFAULT 0,
    cost_cache_write_usd  Decimal(38, 15) DEFAULT 0,
    cost_output_usd       Decimal(38, 15) DEFAULT 0,
    cost_reasoning_usd    Decimal(38, 15) DEFAULT 0,
    list_cost_usd         Decimal(38, 15) DEFAULT 0,
    cost_usd              Decimal(38, 21) DEFAULT 0,
    is_late               Bool DEFAULT false,
    source_topic          LowCardinality(String),
    source_partition      Int32,
    source_offset         Int64,
    schema_version        UInt8,
    _topic                LowCardinality(String),
    _partition            Int32,
    _offset               Int64,
    _timestamp            DateTime64(3, 'UTC'),
    _ingested_at          DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX event_id_bloom event_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (org_id, team, app, toStartOfHour(occurred_at), event_id)
COMMENT 'One row per LLM call (event_id), priced by the Flink pipeline job (usage.priced).';

-- Sessions: what the pipeline job's session windows closed, plus late calls as corrections.
-- Grain: one row per session fragment (session_uid): a closed session (is_correction = 0),
-- or one late call (is_correction = 1) that dbt merges into the session of the same
-- session_key it falls into. Calls are stored one by one in `calls`, so sessions can always
-- be reconciled against them.
-- Writer: the warehouse ingest, from usage.sessions.
-- ORDER BY (org_id, app, session_key, session_uid): a session key's fragments sit together
-- for the merge; session_uid last makes the key the fragment's identity.
CREATE TABLE IF NOT EXISTS sessions
(
    session_uid         String,
    session_key         String,
    is_correction       Bool,
    org_id              LowCardinality(String),
    team                LowCardinality(String),
    user_id             String,
    app                 LowCardinality(String),
    session_id          String DEFAULT '',
    started_at          DateTime64(3, 'UTC'),
    ended_at            DateTime64(3, 'UTC'),
    calls               UInt64,
    errors              UInt64,
    cancelled           UInt64,
    retries             UInt64,
    unpriced_calls      UInt64,
    input_tokens        UInt64,
    cache_read_tokens   UInt64,
    cache_write_tokens  UInt64,
    output_tokens       UInt64,
    reasoning_tokens    UInt64,
    tool_calls          UInt64,
    max_input_tokens    UInt64,
    models_used         Array(LowCardinality(String)),
    list_cost_usd       Decimal(38, 15),
    cost_usd            Decimal(38, 21),
    _topic              LowCardinality(String),
    _partition          Int32,
    _offset             Int64,
    _timestamp          DateTime64(3, 'UTC'),
    _ingested_at        DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(started_at)
ORDER BY (org_id, app, session_key, session_uid)
COMMENT 'One row per closed session or late-call correction (usage.sessions); dbt merges corrections.';
