-- The controls job: usage.priced + usage.budgets -> spend per budget and period -> usage.controls.
-- jobs/README.md says what goes in and out, and why; controls.py runs it and fills the
-- placeholders (dollar-brace names) from the command line, the period arithmetic included.

-- The priced calls, as the price job committed them (read_committed): one per event_id, so a
-- call is counted once. Only what spend needs; money as the exact decimal string it is.
CREATE TABLE priced_src (
  event_id       STRING,
  occurred_at    STRING,
  org_id         STRING,
  team           STRING,
  user_id        STRING,
  app            STRING,
  attributes     MAP<STRING, STRING>,
  pricing_status STRING,
  cost_usd       STRING
) WITH (
  ${priced_options},
  'format' = 'json'
);

-- The budgets: a compacted topic keyed by budget_id, read whole on every fresh start. A null
-- value (tombstone) deletes the budget.
CREATE TABLE budgets_src (
  `key`     STRING,
  `value`   STRING,
  proc_time AS PROCTIME()
) WITH (
  ${budgets_options},
  'key.format' = 'raw',
  'key.fields' = 'key',
  'value.format' = 'raw',
  'value.fields-include' = 'EXCEPT_KEY'
);

-- One record per budget: the decision of its current period. An upsert sink: each record is
-- the whole state of its budget (absolute spend, never an increment), so delivering it twice
-- (at-least-once, after a crash) changes nothing, and it goes out without waiting for a
-- checkpoint. A deleted budget becomes a tombstone.
CREATE TABLE controls_sink (
  budget_id           STRING,
  schema_version      INT,
  org_id              STRING,
  team                STRING,
  user_id             STRING,
  app                 STRING,
  api_key             STRING,
  `period`            STRING,
  time_zone           STRING,
  period_start        STRING,
  period_end          STRING,
  state               STRING,
  action              STRING,
  limit_usd           STRING,
  spent_usd           STRING,
  remaining_usd       STRING,
  warn_at_pct         STRING,
  throttle_per_minute INT,
  calls               BIGINT,
  unpriced_calls      BIGINT,
  reason              STRING,
  updated_at          STRING,
  PRIMARY KEY (budget_id) NOT ENFORCED
) WITH (
  ${controls_options},
  'key.format' = 'raw',
  'value.format' = 'json',
  'value.fields-include' = 'ALL'
);

-- === budgets ==================================================================================

-- The latest record per key (a tombstone retracts the budget before it).
CREATE TEMPORARY VIEW budget_latest AS
SELECT `key` AS budget_id, `value`
FROM (
  SELECT `key`, `value`, ROW_NUMBER() OVER (PARTITION BY `key` ORDER BY proc_time DESC) AS rn
  FROM budgets_src
)
WHERE rn = 1;

-- Spend budgets. `yieldmeter budgets set` validates every budget against the contract
-- (yieldmeter/budgets.py); a record that still lacks what the decision needs is not applied
-- (the warehouse ingest dead-letters it with the reason). cost_per_outcome budgets are the
-- dbt marts' to judge.
CREATE TEMPORARY VIEW budgets AS
SELECT * FROM (
  SELECT
    budget_id,
    JSON_VALUE(`value`, '$$.org_id') AS org_id,
    JSON_VALUE(`value`, '$$.team') AS team,
    JSON_VALUE(`value`, '$$.user_id') AS user_id,
    JSON_VALUE(`value`, '$$.app') AS app,
    JSON_VALUE(`value`, '$$.api_key') AS api_key,
    JSON_VALUE(`value`, '$$.period') AS `period`,
    COALESCE(JSON_VALUE(`value`, '$$.time_zone'), 'UTC') AS time_zone,
    TRY_CAST(JSON_VALUE(`value`, '$$.limit_usd') AS DECIMAL(21, 9)) AS limit_usd,
    COALESCE(TRY_CAST(JSON_VALUE(`value`, '$$.warn_at_pct') AS DECIMAL(7, 4)), CAST(80 AS DECIMAL(7, 4))) AS warn_at_pct,
    COALESCE(JSON_VALUE(`value`, '$$.action'), 'notify') AS action,
    COALESCE(TRY_CAST(JSON_VALUE(`value`, '$$.throttle_per_minute') AS INT), 6) AS throttle_per_minute
  FROM budget_latest
  WHERE `value` IS NOT NULL AND COALESCE(JSON_VALUE(`value`, '$$.kind'), 'spend') = 'spend'
)
WHERE org_id IS NOT NULL AND `period` IN ('day', 'month') AND limit_usd > 0
  AND action IN ('notify', 'throttle', 'block');

-- === spend ====================================================================================

-- Spend per scope fields and UTC quarter hour. Every time zone's midnight falls on a quarter
-- hour, so each quarter lies in one period of any budget; a budget set mid-period finds the
-- quarters before it here. Kept ${state_ttl} (longer than a month) after their last call.
CREATE TEMPORARY VIEW calls AS
SELECT
  org_id, team, user_id, app, attributes['api_key'] AS api_key,
  UNIX_TIMESTAMP(SUBSTRING(occurred_at, 1, 19), 'yyyy-MM-dd''T''HH:mm:ss') / 900 * 900 AS quarter_s,
  CAST(cost_usd AS DECIMAL(38, 21)) AS cost,
  pricing_status
FROM priced_src;

CREATE TEMPORARY VIEW quarter_spend AS
SELECT /*+ STATE_TTL('calls' = '${state_ttl}') */
  org_id, team, user_id, app, api_key, quarter_s,
  -- exact; an unpriced call has no cost: SUM skips it, unpriced_calls counts it
  SUM(cost) AS spent,
  COUNT(*) AS calls,
  SUM(CASE WHEN pricing_status = 'priced' THEN 0 ELSE 1 END) AS unpriced_calls
FROM calls
GROUP BY org_id, team, user_id, app, api_key, quarter_s;

-- Each quarter of each budget whose scope it falls in, with the budget's period that holds it.
-- The budgets side never expires; the quarters side as above.
CREATE TEMPORARY VIEW budget_quarters AS
SELECT budget_id, ${call_period_start} AS period_start, ${call_period_end} AS period_end, spent, calls, unpriced_calls
FROM (
  SELECT /*+ STATE_TTL('q' = '${state_ttl}') */
    b.budget_id, b.`period`, b.time_zone, q.spent, q.calls, q.unpriced_calls,
    CONVERT_TZ(FROM_UNIXTIME(q.quarter_s), 'UTC', b.time_zone) AS local_time
  FROM budgets AS b
  JOIN quarter_spend AS q
    ON q.org_id = b.org_id
    AND (b.team IS NULL OR q.team = b.team)
    AND (b.user_id IS NULL OR q.user_id = b.user_id)
    AND (b.app IS NULL OR q.app = b.app)
    AND (b.api_key IS NULL OR q.api_key = b.api_key)
);

CREATE TEMPORARY VIEW period_spend AS
SELECT /*+ STATE_TTL('budget_quarters' = '${state_ttl}') */
  budget_id, period_start, period_end,
  SUM(spent) AS spent, SUM(calls) AS calls, SUM(unpriced_calls) AS unpriced_calls
FROM budget_quarters
GROUP BY budget_id, period_start, period_end;

-- The current period of each budget: its latest one with calls (in event time).
CREATE TEMPORARY VIEW current_spend AS
SELECT budget_id, period_start, period_end, spent, calls, unpriced_calls
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY budget_id ORDER BY period_start DESC) AS rn
  FROM period_spend
)
WHERE rn = 1;

-- === decisions ================================================================================

CREATE TEMPORARY VIEW decisions AS
SELECT
  b.*,
  -- a budget without calls yet: the period that holds the wall clock
  COALESCE(c.period_start, ${now_period_start}) AS period_start,
  COALESCE(c.period_end, ${now_period_end}) AS period_end,
  -- 13 integer digits, 21 decimals: spent x 100 and limit - spent stay exact (Flink's decimal
  -- arithmetic drops decimals once a result needs more than 38 digits)
  CAST(COALESCE(c.spent, 0) AS DECIMAL(34, 21)) AS spent,
  COALESCE(c.calls, 0) AS calls,
  COALESCE(c.unpriced_calls, 0) AS unpriced_calls,
  CASE
    WHEN b.team IS NULL AND b.user_id IS NULL AND b.app IS NULL AND b.api_key IS NULL THEN CONCAT('org ', b.org_id)
    ELSE CONCAT(CONCAT_WS(', ', CONCAT('team ', b.team), CONCAT('user ', b.user_id), CONCAT('app ', b.app),
                          CONCAT('API key ', b.api_key)), ' of ', b.org_id)
  END AS scope_text
FROM budgets AS b
LEFT JOIN current_spend AS c ON c.budget_id = b.budget_id;

CREATE TEMPORARY VIEW states AS
SELECT
  *,
  CASE
    WHEN spent >= limit_usd THEN CASE action WHEN 'block' THEN 'block' WHEN 'throttle' THEN 'throttle' ELSE 'warn' END
    WHEN spent * 100 >= limit_usd * warn_at_pct THEN 'warn'
    ELSE 'ok'
  END AS state,
  CONCAT(scope_text, ' spent $$', CAST(CAST(spent AS DECIMAL(16, 2)) AS STRING), ' of its $$',
         CAST(CAST(limit_usd AS DECIMAL(16, 2)) AS STRING), CASE `period` WHEN 'day' THEN ' daily' ELSE ' monthly' END,
         ' budget') AS spent_text
FROM decisions;

INSERT INTO controls_sink
SELECT
  budget_id, 1, org_id, team, user_id, app, api_key, `period`, time_zone,
  CONCAT(REPLACE(period_start, ' ', 'T'), '.000Z'),
  CONCAT(REPLACE(period_end, ' ', 'T'), '.000Z'),
  state, action,
  CAST(limit_usd AS STRING), CAST(spent AS STRING), CAST(limit_usd - spent AS STRING),
  CAST(warn_at_pct AS STRING),
  CASE WHEN action = 'throttle' THEN throttle_per_minute END,
  calls, unpriced_calls,
  CONCAT(
    spent_text,
    CASE state
      WHEN 'block' THEN CONCAT(': calls are refused until ', REPLACE(period_end, ' ', 'T'), 'Z')
      WHEN 'throttle' THEN CONCAT(': calls are throttled to ', CAST(throttle_per_minute AS STRING),
                                  ' a minute until ', REPLACE(period_end, ' ', 'T'), 'Z')
      WHEN 'warn' THEN CASE WHEN spent >= limit_usd THEN ' (over the limit; the budget only notifies)'
                            ELSE CONCAT(', past the warning at ', CAST(CAST(warn_at_pct AS DECIMAL(7, 1)) AS STRING), '%') END
      ELSE ''
    END,
    CASE WHEN unpriced_calls > 0
         THEN CONCAT('; ', CAST(unpriced_calls AS STRING), ' call(s) without a known price are not in the spend')
         ELSE '' END),
  DATE_FORMAT(CURRENT_TIMESTAMP, 'yyyy-MM-dd''T''HH:mm:ss.SSS''Z''')
FROM states;
