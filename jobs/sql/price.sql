-- The price job: usage.events -> validate -> deduplicate -> price -> usage.priced (and usage.dlq),
-- in event time, exactly once. jobs/README.md says what goes in and out, and why; price.py runs it.
-- Placeholders (dollar-brace names) are filled from the command line. Each CREATE TEMPORARY
-- VIEW becomes a Table object, so a view that several INSERTs read is planned once.

-- === sources ==================================================================================

-- Every record of usage.events, undecoded: whatever it holds is either valid or a dead letter.
-- The rowtime is read from the raw JSON (YM_EVENT_TIME) because a watermark can only be
-- declared here; a missing, bad or more-than-5-minutes-ahead time is the epoch, which never
-- moves the watermark. The watermark trails by a second (--price-delay): the temporal joins
-- hold every call until the watermark passes it and rescan all they hold at each watermark, so
-- memory and time grow with the delay; the sessions' minutes of out-of-orderness are applied
-- as a lateness flag instead (is_late below) and by the sessionize job.
CREATE TABLE events_src (
  `value`     BYTES,
  `topic`     STRING METADATA VIRTUAL,
  `partition` INT    METADATA VIRTUAL,
  `offset`    BIGINT METADATA VIRTUAL,
  occurred_at AS YM_EVENT_TIME(`value`),
  proc_time   AS PROCTIME(),
  WATERMARK FOR occurred_at AS occurred_at - ${price_delay}
) WITH (
  ${events_options},
  'format' = 'raw',
  'scan.watermark.emit.strategy' = '${watermark_emit}'
);

-- The price catalog: PriceRecords and OrgDiscounts (key prefix discount/), read from the
-- beginning on every fresh start because the joins need the whole history. Its watermark is
-- pinned at the epoch: records are not in effective_from order (the topic is sorted by key),
-- so this side must not let any call through before the whole catalog is read. The joins then
-- wait for the end of this bounded source, or, when continuous, for it to go idle
-- (--idle-timeout, set job-wide: in our runs on Flink 2.2 the per-table option stopped the
-- watermark for good once a partition came back from idle).
CREATE TABLE catalog_src (
  `key`          STRING,
  `value`        STRING,
  effective_from AS YM_CATALOG_TIME(`value`),
  proc_time      AS PROCTIME(),
  WATERMARK FOR effective_from AS TO_TIMESTAMP_LTZ(0, 3)
) WITH (
  ${catalog_options},
  'key.format' = 'raw',
  'key.fields' = 'key',
  'value.format' = 'raw',
  'value.fields-include' = 'EXCEPT_KEY'
);

-- === sinks ====================================================================================

-- One row per rejected record; columns as the warehouse's dead_letters table.
CREATE TABLE dlq_sink (
  source_topic     STRING,
  source_partition INT,
  source_offset    BIGINT,
  rejected_at      STRING,
  reason           STRING,
  payload          STRING
) WITH (
  ${dlq_options},
  'format' = 'json'
);

-- One row per call (event_id), priced. Money is a decimal string, as on every yieldmeter wire.
CREATE TABLE priced_sink (
  schema_version       INT,
  event_id             STRING,
  occurred_at          STRING,
  org_id               STRING,
  team                 STRING,
  user_id              STRING,
  app                  STRING,
  feature              STRING,
  provider             STRING,
  request_model        STRING,
  response_model       STRING,
  model                STRING,
  operation            STRING,
  input_tokens         BIGINT,
  cache_read_tokens    BIGINT,
  cache_write_tokens   BIGINT,
  output_tokens        BIGINT,
  reasoning_tokens     BIGINT,
  service_tier         STRING,
  session_id           STRING,
  trace_id             STRING,
  latency_ms           BIGINT,
  status               STRING,
  error_type           STRING,
  retry_of             STRING,
  tool_calls           BIGINT,
  attributes           MAP<STRING, STRING>,
  session_key          STRING,
  pricing_status       STRING,
  price_id             STRING,
  is_context_tier      BOOLEAN,
  discount_id          STRING,
  discount_pct         STRING,
  cost_input_usd       STRING,
  cost_cache_read_usd  STRING,
  cost_cache_write_usd STRING,
  cost_output_usd      STRING,
  cost_reasoning_usd   STRING,
  list_cost_usd        STRING,
  cost_usd             STRING,
  is_late              BOOLEAN,
  priced_watermark     STRING,
  source_topic         STRING,
  source_partition     INT,
  source_offset        BIGINT
) WITH (
  ${priced_options},
  'key.format' = 'raw',
  'key.fields' = 'event_id',
  'value.format' = 'json',
  'value.fields-include' = 'ALL'
);

-- === validation ===============================================================================

-- Exactly one row per input record (the decoder always emits one; LEFT JOIN keeps the record
-- even if it did not): reason IS NULL = valid, else a dead letter. Nothing else is possible,
-- so valid + dead letters = records in.
CREATE TEMPORARY VIEW events_checked AS
SELECT
  e.event_id, e.org_id, e.team, e.user_id, e.app, e.feature, e.provider, e.request_model,
  e.response_model, e.model, e.operation, e.input_tokens, e.cache_read_tokens,
  e.cache_write_tokens, e.output_tokens, e.reasoning_tokens, e.service_tier, e.session_id,
  e.trace_id, e.latency_ms, e.status, e.error_type, e.retry_of, e.tool_calls, e.attributes,
  e.session_key,
  COALESCE(e.reason, CASE WHEN e.event_id IS NULL THEN '(event): not decoded' END) AS reason,
  s.occurred_at, s.proc_time, s.`value` AS payload_bytes,
  s.`topic` AS source_topic, s.`partition` AS source_partition, s.`offset` AS source_offset
FROM events_src AS s
LEFT JOIN LATERAL TABLE(YM_PARSE_USAGE_EVENT(s.`value`, s.occurred_at)) AS e ON TRUE;

-- === deduplication ============================================================================

-- The first delivery of each event_id wins; later ones are dropped (they are the same call).
-- Append-only, keeps the rowtime. Its state expires --dedup-ttl after the id was last seen
-- (set on this operator alone by pipeline.py: the joins must never forget a price).
CREATE TEMPORARY VIEW calls AS
SELECT
  event_id, occurred_at, org_id, team, user_id, app, feature, provider, request_model,
  response_model, model, operation, input_tokens, cache_read_tokens, cache_write_tokens,
  output_tokens, reasoning_tokens, service_tier, session_id, trace_id, latency_ms, status,
  error_type, retry_of, tool_calls, attributes, session_key, source_topic, source_partition,
  source_offset,
  -- Behind the pricing watermark already: if the price changed since, the joins may have
  -- dropped the version in force at its time (pricing_status 'unpriced_late').
  (occurred_at <= CURRENT_WATERMARK(occurred_at)) IS TRUE AS is_price_late,
  -- More than --out-of-orderness behind the newest call: too late for its session, which is
  -- emitted as a correction (sessionize.sql). Decided here, in arrival order, because the joins
  -- release calls key by key, not in the order they came.
  (occurred_at <= CURRENT_WATERMARK(occurred_at) - ${session_lateness}) IS TRUE AS is_late
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY proc_time ASC) AS row_num
  FROM events_checked
  WHERE reason IS NULL)
WHERE row_num = 1;

-- === the price catalog as versioned tables ====================================================

CREATE TEMPORARY VIEW catalog AS
SELECT c.effective_from, c.proc_time, r.*
FROM catalog_src AS c, LATERAL TABLE(YM_PARSE_CATALOG(c.`key`, c.`value`)) AS r;

-- Versioned tables for FOR SYSTEM_TIME AS OF: primary key + event time (effective_from).
-- Each view forwards every record as the newest row of its key, in arrival order (ORDER BY
-- proc_time, not effective_from: a rowtime dedup would drop a version that arrives after a
-- later one, and the topic is not in effective_from order). The join files each row under its
-- effective_from, so all versions are kept, and a record with the same key and effective_from
-- (the same price_id) replaces the earlier one, as compaction does.
CREATE TEMPORARY VIEW prices_by_tier AS
SELECT * FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY provider, model, service_tier ORDER BY proc_time DESC) AS row_num
  FROM catalog WHERE kind = 'price')
WHERE row_num = 1;

-- A call on a service tier the catalog does not price pays the model's default-tier price.
CREATE TEMPORARY VIEW prices_default AS
SELECT * FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY provider, model ORDER BY proc_time DESC) AS row_num
  FROM catalog WHERE kind = 'price' AND service_tier = 'default')
WHERE row_num = 1;

CREATE TEMPORARY VIEW discounts_by_provider AS
SELECT * FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY org_id, provider ORDER BY proc_time DESC) AS row_num
  FROM catalog WHERE kind = 'discount' AND provider <> '*')
WHERE row_num = 1;

CREATE TEMPORARY VIEW discounts_all AS
SELECT * FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY org_id ORDER BY proc_time DESC) AS row_num
  FROM catalog WHERE kind = 'discount' AND provider = '*')
WHERE row_num = 1;

-- === pricing ==================================================================================

-- The price and discount in force at occurred_at (event-time temporal joins: a call is emitted
-- once the watermark passes it, so the versions it needs have arrived). LEFT joins: a call with
-- no price stays, unpriced.
CREATE TEMPORARY VIEW calls_with_price AS
SELECT
  c.*,
  pt.price_id IS NOT NULL AS is_tier_price,
  COALESCE(pt.price_id, pd.price_id) AS price_id,
  CASE WHEN pt.price_id IS NOT NULL THEN pt.input_per_mtok ELSE pd.input_per_mtok END AS p_input,
  CASE WHEN pt.price_id IS NOT NULL THEN pt.output_per_mtok ELSE pd.output_per_mtok END AS p_output,
  CASE WHEN pt.price_id IS NOT NULL THEN pt.cache_read_per_mtok ELSE pd.cache_read_per_mtok END AS p_cache_read,
  CASE WHEN pt.price_id IS NOT NULL THEN pt.cache_write_per_mtok ELSE pd.cache_write_per_mtok END AS p_cache_write,
  CASE WHEN pt.price_id IS NOT NULL THEN pt.reasoning_per_mtok ELSE pd.reasoning_per_mtok END AS p_reasoning,
  CASE WHEN pt.price_id IS NOT NULL THEN pt.tier_threshold_input_tokens ELSE pd.tier_threshold_input_tokens END AS p_threshold,
  CASE WHEN pt.price_id IS NOT NULL THEN pt.input_above_per_mtok ELSE pd.input_above_per_mtok END AS p_input_above,
  CASE WHEN pt.price_id IS NOT NULL THEN pt.output_above_per_mtok ELSE pd.output_above_per_mtok END AS p_output_above,
  CASE WHEN pt.price_id IS NOT NULL THEN pt.cache_read_above_per_mtok ELSE pd.cache_read_above_per_mtok END AS p_cache_read_above,
  CASE WHEN pt.price_id IS NOT NULL THEN pt.cache_write_above_per_mtok ELSE pd.cache_write_above_per_mtok END AS p_cache_write_above,
  CASE WHEN pt.price_id IS NOT NULL THEN pt.reasoning_above_per_mtok ELSE pd.reasoning_above_per_mtok END AS p_reasoning_above,
  -- The org's discount for the call's provider, else its all-provider one (OrgDiscount).
  COALESCE(dp.discount_id, da.discount_id) AS discount_id,
  CASE WHEN dp.discount_id IS NOT NULL THEN dp.discount_pct ELSE da.discount_pct END AS discount_pct
FROM calls AS c
LEFT JOIN prices_by_tier FOR SYSTEM_TIME AS OF c.occurred_at AS pt
  ON pt.provider = c.provider AND pt.model = c.model AND pt.service_tier = c.service_tier
LEFT JOIN prices_default FOR SYSTEM_TIME AS OF c.occurred_at AS pd
  ON pd.provider = c.provider AND pd.model = c.model
LEFT JOIN discounts_by_provider FOR SYSTEM_TIME AS OF c.occurred_at AS dp
  ON dp.org_id = c.org_id AND dp.provider = c.provider
LEFT JOIN discounts_all FOR SYSTEM_TIME AS OF c.occurred_at AS da
  ON da.org_id = c.org_id;

-- PriceRecord.rates_for: above the context threshold (input tokens, cached included) every
-- token of the call pays the *_above rate; unset rates fall back (cache -> input,
-- reasoning -> output; above: own above rate, else the base rate, else the parent's above rate).
CREATE TEMPORARY VIEW calls_with_rates AS
SELECT
  *,
  CASE WHEN is_context_tier THEN p_input_above ELSE p_input END AS r_input,
  CASE WHEN is_context_tier THEN p_output_above ELSE p_output END AS r_output,
  CASE WHEN is_context_tier THEN COALESCE(p_cache_read_above, p_cache_read, p_input_above)
       ELSE COALESCE(p_cache_read, p_input) END AS r_cache_read,
  CASE WHEN is_context_tier THEN COALESCE(p_cache_write_above, p_cache_write, p_input_above)
       ELSE COALESCE(p_cache_write, p_input) END AS r_cache_write,
  CASE WHEN is_context_tier THEN COALESCE(p_reasoning_above, p_reasoning, p_output_above)
       ELSE COALESCE(p_reasoning, p_output) END AS r_reasoning
FROM (
  SELECT *, (p_threshold IS NOT NULL AND input_tokens > p_threshold) IS TRUE AS is_context_tier
  FROM calls_with_price);

-- Exact money. tokens (<= 1e9) x rate (DECIMAL(21, 9)) fits DECIMAL(31, 9); x 0.000001 is exact
-- (DECIMAL(38, 15)); a component (< 1e16 USD) is kept as DECIMAL(31, 15). The discount factor
-- (100 - pct) / 100 has at most 6 decimals, so cost_usd = list x factor is exact in
-- DECIMAL(38, 21). Every step is a multiplication: Flink's decimal division would round.
CREATE TEMPORARY VIEW calls_costed AS
SELECT
  *,
  CAST(cost_input_usd + cost_cache_read_usd + cost_cache_write_usd + cost_output_usd + cost_reasoning_usd
       AS DECIMAL(31, 15)) AS list_cost_usd
FROM (
  SELECT
    *,
    CAST(CAST(CAST(input_tokens - cache_read_tokens - cache_write_tokens AS DECIMAL(10, 0)) * r_input AS DECIMAL(31, 9))
         * 0.000001 AS DECIMAL(31, 15)) AS cost_input_usd,
    CAST(CAST(CAST(cache_read_tokens AS DECIMAL(10, 0)) * r_cache_read AS DECIMAL(31, 9))
         * 0.000001 AS DECIMAL(31, 15)) AS cost_cache_read_usd,
    CAST(CAST(CAST(cache_write_tokens AS DECIMAL(10, 0)) * r_cache_write AS DECIMAL(31, 9))
         * 0.000001 AS DECIMAL(31, 15)) AS cost_cache_write_usd,
    CAST(CAST(CAST(output_tokens - reasoning_tokens AS DECIMAL(10, 0)) * r_output AS DECIMAL(31, 9))
         * 0.000001 AS DECIMAL(31, 15)) AS cost_output_usd,
    CAST(CAST(CAST(reasoning_tokens AS DECIMAL(10, 0)) * r_reasoning AS DECIMAL(31, 9))
         * 0.000001 AS DECIMAL(31, 15)) AS cost_reasoning_usd
  FROM calls_with_rates);

CREATE TEMPORARY VIEW calls_priced AS
SELECT
  *,
  CASE
    WHEN price_id IS NOT NULL THEN 'priced'
    -- Late and unpriced: the price may exist but its version was already cleaned from the
    -- join's state; the warehouse can reprice it from its prices table.
    WHEN is_price_late THEN 'unpriced_late'
    ELSE 'unpriced'
  END AS pricing_status,
  CASE
    WHEN discount_pct IS NULL OR discount_pct = 0 THEN CAST(list_cost_usd AS DECIMAL(38, 21))
    ELSE list_cost_usd * CAST((100 - discount_pct) * 0.01 AS DECIMAL(6, 6))
  END AS cost_usd,
  -- The joins' watermark when they released the call (null before the first one): no call
  -- released later is older, unless it is late. The sessionize job's watermark follows it.
  CURRENT_WATERMARK(occurred_at) AS priced_watermark
FROM calls_costed;

-- === outputs ==================================================================================

INSERT INTO dlq_sink
SELECT
  source_topic, source_partition, source_offset,
  DATE_FORMAT(CURRENT_TIMESTAMP, 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z''') AS rejected_at,
  reason,
  COALESCE(CAST(payload_bytes AS STRING), '') AS payload
FROM events_checked
WHERE reason IS NOT NULL;

INSERT INTO priced_sink
SELECT
  1, event_id, DATE_FORMAT(occurred_at, 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z'''), org_id, team, user_id,
  app, feature, provider, request_model, response_model, model, operation, input_tokens,
  cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens, service_tier, session_id,
  trace_id, latency_ms, status, error_type, retry_of, tool_calls, attributes, session_key,
  pricing_status, price_id, is_context_tier, discount_id, CAST(discount_pct AS STRING),
  CAST(cost_input_usd AS STRING), CAST(cost_cache_read_usd AS STRING),
  CAST(cost_cache_write_usd AS STRING), CAST(cost_output_usd AS STRING),
  CAST(cost_reasoning_usd AS STRING), CAST(list_cost_usd AS STRING), CAST(cost_usd AS STRING),
  is_late, DATE_FORMAT(priced_watermark, 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z'''),
  source_topic, source_partition, source_offset
FROM calls_priced;
