-- The price job: usage.events -> validate -> deduplicate -> price -> usage.priced (and usage.dlq),
-- in event time, exactly once. jobs/README.md says what goes in and out, and why; price.py runs it.
-- Placeholders (dollar-brace names) are filled from the command line. Each CREATE TEMPORARY
-- VIEW becomes a Table object, so a view that several INSERTs read is planned once.

-- === sources ==================================================================================

-- Every record of usage.events, undecoded: whatever it holds is either valid or a dead letter.
-- The rowtime is read from the raw JSON (YM_EVENT_TIME) because a watermark can only be
-- declared here; a missing, bad or more-than-5-minutes-ahead time is the epoch, which never
-- moves the watermark. Pricing does not wait for it (YM_PRICE prices each call as it comes);
-- it trails the newest call by --price-delay (1 s) and travels with each priced call, which
-- the sessionize job's watermark follows. The sessions' minutes of out-of-orderness are
-- applied as a lateness flag (is_late below) and by the sessionize job.
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

-- One row per call (event_id), priced. Money is a decimal string, as on every yieldmeter wire:
-- components and list_cost_usd with 15 decimals, cost_usd (after the org discount) with 21.
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
  provider_raw         STRING,
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
  e.event_id, e.org_id, e.team, e.user_id, e.app, e.feature, e.provider, e.provider_raw, e.request_model,
  e.response_model, e.model, e.operation, e.input_tokens, e.cache_read_tokens,
  e.cache_write_tokens, e.output_tokens, e.reasoning_tokens, e.service_tier, e.session_id,
  e.trace_id, e.latency_ms, e.status, e.error_type, e.retry_of, e.tool_calls, e.attributes,
  e.session_key,
  COALESCE(e.reason, CASE WHEN e.event_id IS NULL THEN '(event): not decoded' END) AS reason,
  s.occurred_at, s.proc_time, s.`value` AS payload_bytes,
  s.`topic` AS source_topic, s.`partition` AS source_partition, s.`offset` AS source_offset
FROM events_src AS s
LEFT JOIN LATERAL TABLE(YM_PARSE_USAGE_EVENT(s.`value`, s.occurred_at)) AS e ON TRUE;

-- === pricing ==================================================================================

-- Every valid call priced in the operator that decodes it (chained: no shuffle, no waiting):
-- YM_PRICE holds the whole catalog of the prices topic in memory, every version of every price
-- and discount, and applies docs/pricing.md's rules at occurred_at, whatever order or lateness
-- the call arrives with. A call with no price in force is 'unpriced', its costs null (never 0).
CREATE TEMPORARY VIEW calls_priced AS
SELECT c.*, p.*
FROM (SELECT * FROM events_checked WHERE reason IS NULL) AS c,
LATERAL TABLE(YM_PRICE(
  c.provider, c.model, c.service_tier, c.org_id, c.occurred_at, c.input_tokens, c.cache_read_tokens,
  c.cache_write_tokens, c.output_tokens, c.reasoning_tokens, '${prices_bootstrap}', '${prices_topic}')) AS p;

-- === deduplication ============================================================================

-- The first delivery of each event_id wins; later ones are dropped (they are the same call).
-- Append-only, keeps the rowtime. Its state expires --dedup-ttl after the id was last seen
-- (set on this operator by pipeline.py).
CREATE TEMPORARY VIEW calls AS
SELECT
  *,
  -- More than --out-of-orderness behind the newest call: too late for its session, which is
  -- emitted as a correction (sessionize.sql). Decided here, in arrival order.
  (occurred_at <= CURRENT_WATERMARK(occurred_at) - ${session_lateness}) IS TRUE AS is_late,
  -- This job's watermark when the call passed (null before the first one); the sessionize
  -- job's watermark follows it.
  CURRENT_WATERMARK(occurred_at) AS priced_watermark
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY proc_time ASC) AS row_num
  FROM calls_priced)
WHERE row_num = 1;

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
  app, feature, provider, provider_raw, request_model, response_model, model, operation, input_tokens,
  cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens, service_tier, session_id,
  trace_id, latency_ms, status, error_type, retry_of, tool_calls, attributes, session_key,
  pricing_status, price_id, is_context_tier, discount_id, discount_pct, cost_input_usd,
  cost_cache_read_usd, cost_cache_write_usd, cost_output_usd, cost_reasoning_usd, list_cost_usd,
  cost_usd, is_late, DATE_FORMAT(priced_watermark, 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z'''),
  source_topic, source_partition, source_offset
FROM calls;
