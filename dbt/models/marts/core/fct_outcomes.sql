{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='outcome_id',
          order_by='(org_id, app, outcome_type, occurred_at, outcome_id)') }}
-- Incremental by outcome (macros/incremental.sql).
-- depends_on: {{ ref('int_rebuild_scope') }}

-- Outcomes, typed, with the session they are attributed to and that session's model and cost.
select
    o.outcome_id as outcome_id,
    o.occurred_at as occurred_at,
    toDate(o.occurred_at) as day,
    o.org_id as org_id,
    o.team as team,
    o.user_id as user_id,
    o.app as app,
    o.outcome_type as outcome_type,
    o.is_success as is_success,
    o.value_usd as value_usd,
    o.session_id as session_id,
    o.trace_id as trace_id,
    a.session_uid as session_uid,
    a.attribution_method as attribution_method,
    a.session_uid != '' ? s.primary_model : '' as model,
    a.session_uid != '' ? s.cost_usd : null as session_cost_usd,
    a.session_uid != '' ? s.total_tokens : null as session_tokens,
    o.attributes as attributes
from (
    select * from {{ ref('stg_outcomes') }} where {{ in_rebuild_scope('outcome_id', 'outcome_id') }}
) as o
inner join (
    select * from {{ ref('fct_outcome_attributions') }} where {{ in_rebuild_scope('outcome_id', 'outcome_id') }}
) as a on o.outcome_id = a.outcome_id
left join (
    select * from {{ ref('fct_sessions') }}
    {% if is_incremental() %}
    where session_uid in (
        select session_uid from {{ ref('fct_outcome_attributions') }}
        where {{ in_rebuild_scope('outcome_id', 'outcome_id') }})
    {% endif %}
) as s on a.session_uid = s.session_uid
