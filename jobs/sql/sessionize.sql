-- The sessionize job: usage.priced -> session windows in event time -> usage.sessions, exactly
-- once. jobs/README.md says what goes in and out, and why; sessionize.py runs it.
-- Placeholders (dollar-brace names) are filled from the command line.

-- The priced calls, as the price job committed them (read_committed): valid, one per event_id.
-- They come in the order the price job's joins released them (key by key, so not quite in time
-- order); the watermark follows the joins' own (priced_watermark), minus --out-of-orderness,
-- so no call released later can be behind it unless the price job found it late (is_late).
CREATE TABLE priced_src (
  occurred_at       TIMESTAMP_LTZ(3),
  priced_watermark  TIMESTAMP_LTZ(3),
  is_late           BOOLEAN,
  event_id          STRING,
  org_id            STRING,
  team              STRING,
  user_id           STRING,
  app               STRING,
  model             STRING,
  input_tokens      BIGINT,
  cache_read_tokens BIGINT,
  cache_write_tokens BIGINT,
  output_tokens     BIGINT,
  reasoning_tokens  BIGINT,
  session_id        STRING,
  status            STRING,
  retry_of          STRING,
  tool_calls        BIGINT,
  session_key       STRING,
  price_id          STRING,
  list_cost_usd     STRING,
  cost_usd          STRING,
  WATERMARK FOR occurred_at AS COALESCE(priced_watermark, TO_TIMESTAMP_LTZ(0, 3)) - ${out_of_orderness}
) WITH (
  ${priced_options},
  'format' = 'json',
  'json.timestamp-format.standard' = 'ISO-8601',
  'scan.watermark.emit.strategy' = '${watermark_emit}'
);

-- One row per closed session, or per late call (is_correction: merge it into its session).
CREATE TABLE sessions_sink (
  session_uid        STRING,
  session_key        STRING,
  is_correction      BOOLEAN,
  org_id             STRING,
  team               STRING,
  user_id            STRING,
  app                STRING,
  session_id         STRING,
  started_at         STRING,
  ended_at           STRING,
  calls              BIGINT,
  errors             BIGINT,
  cancelled          BIGINT,
  retries            BIGINT,
  unpriced_calls     BIGINT,
  input_tokens       BIGINT,
  cache_read_tokens  BIGINT,
  cache_write_tokens BIGINT,
  output_tokens      BIGINT,
  reasoning_tokens   BIGINT,
  tool_calls         BIGINT,
  max_input_tokens   BIGINT,
  models_used        ARRAY<STRING>,
  list_cost_usd      STRING,
  cost_usd           STRING
) WITH (
  ${sessions_options},
  'key.format' = 'raw',
  'key.fields' = 'session_uid',
  'value.format' = 'json',
  'value.fields-include' = 'ALL'
);

-- A late call becomes a correction: the price job's verdict, or, as a safety net, being behind
-- this job's watermark already (a session window would drop it without a trace).
CREATE TEMPORARY VIEW calls AS
SELECT
  event_id, occurred_at, org_id, team, user_id, app, model, input_tokens, cache_read_tokens,
  cache_write_tokens, output_tokens, reasoning_tokens, session_id, status, retry_of, tool_calls,
  session_key, price_id,
  CAST(list_cost_usd AS DECIMAL(31, 15)) AS list_cost,
  CAST(cost_usd AS DECIMAL(38, 21)) AS cost,
  (is_late OR occurred_at <= CURRENT_WATERMARK(occurred_at)) IS TRUE AS is_late
FROM priced_src;

CREATE TEMPORARY VIEW calls_on_time AS
SELECT * FROM calls WHERE NOT is_late;

-- A session closes when the watermark passes its last call + the gap. Its uid is md5(key |
-- start): the same calls give the same uid; start is the first call, which only moves while
-- the session is open (an on-time call may extend it backwards).
INSERT INTO sessions_sink
SELECT
  MD5(session_key || '|' || DATE_FORMAT(window_start, 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z''')) AS session_uid,
  session_key,
  FALSE AS is_correction,
  MIN(org_id), MIN(team), MIN(user_id), MIN(app), MIN(session_id),
  DATE_FORMAT(MIN(occurred_at), 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z'''),
  DATE_FORMAT(MAX(occurred_at), 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z'''),
  COUNT(*),
  SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END),
  SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END),
  SUM(CASE WHEN retry_of IS NOT NULL THEN 1 ELSE 0 END),
  SUM(CASE WHEN price_id IS NULL THEN 1 ELSE 0 END),
  SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(output_tokens),
  SUM(reasoning_tokens), SUM(tool_calls), MAX(input_tokens),
  ARRAY_SORT(ARRAY_AGG(DISTINCT model)),
  CAST(SUM(list_cost) AS STRING),
  CAST(SUM(cost) AS STRING)
FROM TABLE(SESSION(TABLE calls_on_time PARTITION BY session_key, DESCRIPTOR(occurred_at), ${session_gap}))
GROUP BY session_key, window_start, window_end
UNION ALL
-- A late call, alone: the warehouse adds it to the session of the same session_key whose
-- [started_at - gap, ended_at + gap] holds its time (or counts it as a session of its own).
SELECT
  MD5('late|' || event_id), session_key, TRUE, org_id, team, user_id, app, session_id,
  DATE_FORMAT(occurred_at, 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z'''),
  DATE_FORMAT(occurred_at, 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z'''),
  CAST(1 AS BIGINT),
  CAST(CASE WHEN status = 'error' THEN 1 ELSE 0 END AS BIGINT),
  CAST(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END AS BIGINT),
  CAST(CASE WHEN retry_of IS NOT NULL THEN 1 ELSE 0 END AS BIGINT),
  CAST(CASE WHEN price_id IS NULL THEN 1 ELSE 0 END AS BIGINT),
  input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
  tool_calls, input_tokens, ARRAY[model],
  CAST(list_cost AS STRING), CAST(cost AS STRING)
FROM calls
WHERE is_late;
