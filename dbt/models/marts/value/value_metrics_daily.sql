{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='day',
          order_by='(day, org_id, team, user_id, app, model, outcome_type)') }}
-- Incremental by day (macros/incremental.sql): the days of the calls, sessions and outcomes this
-- build rebuilt (rebuilt_days) are summed again from the fct_ marts. Days, not partitions: day
-- partitions would pass ClickHouse's 100 partitions per insert.
-- depends_on: {{ ref('int_rebuild_scope') }}

-- Value against volume per day, org, team, user, app, model and outcome type. Calls count on
-- their own day and model; sessions on the day they started, under their primary model;
-- outcomes on their own day, under the model of the session they are attributed to. The
-- additive columns sum to any coarser grain; recompute the ratios from them when rolling up.
{% set money = 'Decimal(38, 21)' %}
{% set in_rebuilt_days = in_days('day', rebuilt_days()) %}

with calls as (
    select
        day, org_id, team, user_id, app, model, outcome_type,
        count() as calls,
        countIf(status = 'error') as error_calls,
        countIf(status = 'cancelled') as cancelled_calls,
        countIf(is_retry) as retry_calls,
        countIf(not is_priced) as unpriced_calls,
        sum(input_tokens) as input_tokens,
        sum(cache_read_tokens) as cache_read_tokens,
        sum(cache_write_tokens) as cache_write_tokens,
        sum(output_tokens) as output_tokens,
        sum(reasoning_tokens) as reasoning_tokens,
        sum(total_tokens) as total_tokens,
        sumIf(total_tokens, is_idle_session) as idle_tokens,
        sumIf(total_tokens, status != 'ok') as waste_tokens,
        CAST(sum(cost_usd) AS {{ money }}) as cost_usd,
        CAST(sum(list_cost_usd) AS {{ money }}) as list_cost_usd,
        CAST(sum(cost_input_usd) AS {{ money }}) as cost_input_usd,
        CAST(sum(cost_cache_read_usd) AS {{ money }}) as cost_cache_read_usd,
        CAST(sum(cost_cache_write_usd) AS {{ money }}) as cost_cache_write_usd,
        CAST(sum(cost_output_usd) AS {{ money }}) as cost_output_usd,
        CAST(sum(cost_reasoning_usd) AS {{ money }}) as cost_reasoning_usd,
        CAST(sumIf(cost_usd, is_idle_session) AS {{ money }}) as idle_cost_usd,
        CAST(sumIf(cost_usd, status != 'ok') AS {{ money }}) as waste_cost_usd,
        toUInt64(0) as sessions,
        toUInt64(0) as idle_sessions,
        toUInt64(0) as outcomes,
        toUInt64(0) as successful_outcomes,
        CAST(NULL AS Nullable(Decimal(38, 9))) as outcome_value_usd
    from {{ ref('fct_calls') }}
    where {{ in_rebuilt_days }}
    group by day, org_id, team, user_id, app, model, outcome_type
),

sessions as (
    select
        day, org_id, team, user_id, app, primary_model as model, outcome_type,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        CAST(0 AS {{ money }}), CAST(0 AS {{ money }}), CAST(0 AS {{ money }}), CAST(0 AS {{ money }}),
        CAST(0 AS {{ money }}), CAST(0 AS {{ money }}), CAST(0 AS {{ money }}), CAST(0 AS {{ money }}),
        CAST(0 AS {{ money }}),
        count() as sessions,
        countIf(is_idle) as idle_sessions,
        0, 0, CAST(NULL AS Nullable(Decimal(38, 9)))
    from {{ ref('fct_sessions') }}
    where {{ in_rebuilt_days }}
    group by day, org_id, team, user_id, app, model, outcome_type
),

outcomes as (
    select
        day, org_id, team, user_id, app, model, outcome_type,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        CAST(0 AS {{ money }}), CAST(0 AS {{ money }}), CAST(0 AS {{ money }}), CAST(0 AS {{ money }}),
        CAST(0 AS {{ money }}), CAST(0 AS {{ money }}), CAST(0 AS {{ money }}), CAST(0 AS {{ money }}),
        CAST(0 AS {{ money }}),
        0, 0,
        count() as outcomes,
        countIf(is_success) as successful_outcomes,
        CAST(sumIf(value_usd, is_success) AS Nullable(Decimal(38, 9))) as outcome_value_usd
    from {{ ref('fct_outcomes') }}
    where {{ in_rebuilt_days }}
    group by day, org_id, team, user_id, app, model, outcome_type
),

unioned as (
    select * from calls
    union all
    select * from sessions
    union all
    select * from outcomes
),

summed as (
    select
        day, org_id, team, user_id, app, model, outcome_type,
        sum(calls) as calls,
        sum(error_calls) as error_calls,
        sum(cancelled_calls) as cancelled_calls,
        sum(retry_calls) as retry_calls,
        sum(unpriced_calls) as unpriced_calls,
        sum(input_tokens) as input_tokens,
        sum(cache_read_tokens) as cache_read_tokens,
        sum(cache_write_tokens) as cache_write_tokens,
        sum(output_tokens) as output_tokens,
        sum(reasoning_tokens) as reasoning_tokens,
        sum(total_tokens) as total_tokens,
        sum(idle_tokens) as idle_tokens,
        sum(waste_tokens) as waste_tokens,
        CAST(sum(cost_usd) AS {{ money }}) as cost_usd,
        CAST(sum(list_cost_usd) AS {{ money }}) as list_cost_usd,
        CAST(sum(cost_input_usd) AS {{ money }}) as cost_input_usd,
        CAST(sum(cost_cache_read_usd) AS {{ money }}) as cost_cache_read_usd,
        CAST(sum(cost_cache_write_usd) AS {{ money }}) as cost_cache_write_usd,
        CAST(sum(cost_output_usd) AS {{ money }}) as cost_output_usd,
        CAST(sum(cost_reasoning_usd) AS {{ money }}) as cost_reasoning_usd,
        CAST(sum(idle_cost_usd) AS {{ money }}) as idle_cost_usd,
        CAST(sum(waste_cost_usd) AS {{ money }}) as waste_cost_usd,
        sum(sessions) as sessions,
        sum(idle_sessions) as idle_sessions,
        sum(outcomes) as outcomes,
        sum(successful_outcomes) as successful_outcomes,
        sum(outcome_value_usd) as outcome_value_usd
    from unioned
    group by day, org_id, team, user_id, app, model, outcome_type
),

with_ratios as (
    -- the metrics, each defined once (macros/metrics.sql); money ones are empty while a call is unpriced
    select
        *,
        {{ is_fully_priced() }} as is_fully_priced,
        {{ cost_per_successful_outcome_usd() }} as cost_per_successful_outcome_usd,
        {{ tokens_per_outcome() }} as tokens_per_outcome,
        {{ outcomes_per_million_tokens() }} as outcomes_per_million_tokens,
        {{ idle_token_share() }} as idle_token_share,
        {{ waste_cost_share() }} as waste_cost_share,
        {{ cache_hit_share() }} as cache_hit_share,
        {{ verbosity() }} as verbosity,
        {{ value_over_cost() }} as value_over_cost
    from summed
)

select
    *,
    -- peers: every user of the same app and model that day
    {{ median_exact('verbosity') }} over (partition by day, app, model) as peer_verbosity,
    if(peer_verbosity > 0, verbosity / peer_verbosity, NULL) as verbosity_vs_peers
from with_ratios
