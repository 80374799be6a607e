{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='outcome_id', order_by='(outcome_id)') }}
-- Incremental by outcome (macros/incremental.sql).
-- depends_on: {{ ref('int_rebuild_scope') }}

-- The attribution with its evidence: which key linked the outcome, to which session, how long
-- after the session's last call it came.
select
    a.outcome_id as outcome_id,
    o.occurred_at as occurred_at,
    o.org_id as org_id,
    o.outcome_type as outcome_type,
    a.attribution_method as attribution_method,
    a.session_uid as session_uid,
    multiIf(a.attribution_method = 'session_id', o.session_id,
            a.attribution_method = 'trace_id', o.trace_id,
            a.attribution_method = 'user_time', concat(o.user_id, ' / ', o.app), '') as matched_on,
    a.session_uid != '' ? dateDiff('second', s.ended_at, o.occurred_at) : null as lag_after_session_s,
    {{ var('attribution_window_hours') | int }} as attribution_window_hours
from (
    select * from {{ ref('int_outcome_attribution') }} where {{ in_rebuild_scope('outcome_id', 'outcome_id') }}
) as a
inner join (
    select * from {{ ref('stg_outcomes') }} where {{ in_rebuild_scope('outcome_id', 'outcome_id') }}
) as o on a.outcome_id = o.outcome_id
left join (
    select * from {{ ref('int_sessions_merged') }}
    {% if is_incremental() %}
    where session_uid in (
        select session_uid from {{ ref('int_outcome_attribution') }}
        where {{ in_rebuild_scope('outcome_id', 'outcome_id') }})
    {% endif %}
) as s on a.session_uid = s.session_uid
