{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='session_key',
          order_by='(org_id, app, started_at, session_uid)') }}
-- Incremental by session key (macros/incremental.sql): deleting a key's rows also removes a
-- session a late call merged into another.
-- depends_on: {{ ref('int_rebuild_scope') }}

with sessions as (
    select * from {{ ref('int_sessions_merged') }}
    where {{ in_rebuild_scope('session_key') }}
),

models as (
    -- the model the session spent most on (tokens break ties, e.g. when nothing is priced, then the
    -- model named first), and what the warehouse's repricing changed in the pipeline's totals
    select session_uid, argMin(model, (-cost_usd, -toInt64(total_tokens), model)) as primary_model, sum(calls) as stored_calls,
        sum(repriced_list_cost_usd) as repriced_list_cost_usd, sum(repriced_cost_usd) as repriced_cost_usd,
        sum(newly_priced_calls) as newly_priced_calls
    from (
        select session_uid, model, sum(cost_usd) as cost_usd, sum(total_tokens) as total_tokens, count() as calls,
            sum(list_cost_usd - recorded_list_cost_usd) as repriced_list_cost_usd,
            sum(cost_usd - recorded_cost_usd) as repriced_cost_usd,
            countIf(pricing_status = 'repriced' and recorded_pricing_status != 'priced') as newly_priced_calls
        from {{ ref('int_calls_sessionized') }}
        where session_uid != '' and {{ in_rebuild_scope('session_key') }}
        group by session_uid, model
    )
    group by session_uid
),

outcomes as (
    {{ session_outcomes() }}
)

select
    s.session_uid as session_uid,
    s.session_key as session_key,
    s.org_id as org_id,
    s.team as team,
    s.user_id as user_id,
    s.app as app,
    s.session_id as session_id,
    s.started_at as started_at,
    s.ended_at as ended_at,
    toDate(s.started_at) as day,
    dateDiff('second', s.started_at, s.ended_at) as duration_s,
    m.primary_model as primary_model,
    s.models_used as models_used,
    o.outcome_type as outcome_type,
    s.calls as calls,
    m.stored_calls as stored_calls,
    s.error_calls as error_calls,
    s.cancelled_calls as cancelled_calls,
    s.retry_calls as retry_calls,
    toUInt64(s.unpriced_calls - m.newly_priced_calls) as unpriced_calls,
    s.late_calls as late_calls,
    s.input_tokens as input_tokens,
    s.cache_read_tokens as cache_read_tokens,
    s.cache_write_tokens as cache_write_tokens,
    s.output_tokens as output_tokens,
    s.reasoning_tokens as reasoning_tokens,
    s.total_tokens as total_tokens,
    s.tool_calls as tool_calls,
    s.max_input_tokens as max_input_tokens,
    CAST(s.list_cost_usd + m.repriced_list_cost_usd AS Decimal(38, 15)) as list_cost_usd,
    CAST(s.cost_usd + m.repriced_cost_usd AS Decimal(38, 21)) as cost_usd,
    o.outcomes as outcomes,
    o.successful_outcomes as successful_outcomes,
    o.outcome_value_usd as outcome_value_usd,
    o.first_outcome_at as first_outcome_at,
    o.is_idle as is_idle
from sessions as s
left join models as m on s.session_uid = m.session_uid
left join outcomes as o on s.session_uid = o.session_uid
