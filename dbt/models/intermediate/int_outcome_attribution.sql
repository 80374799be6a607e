-- Each outcome's session, found once, in this order:
--   1. session_id: the session of the same org and session id, the latest started by then;
--   2. trace_id: the session of the latest call of the same org and trace before the outcome;
--   3. user_time: the same org's, user's and app's most recent session started before the
--      outcome and ended within the attribution window before it;
--   else unattributed. One row per outcome, so no outcome is counted twice.
-- Incremental by outcome: the outcomes int_changed_keys lists, against the sessions and calls
-- that share a link with them (all a link can find).
-- depends_on: {{ ref('int_changed_keys') }}
{% set window_h = var('attribution_window_hours') | int %}

with outcomes as (
    select outcome_id, occurred_at, org_id, user_id, app, session_id, trace_id
    from {{ ref('stg_outcomes') }}
    where {{ in_changed_keys('outcome_id', 'outcome_id') }}
),

sessions as (
    select session_uid, org_id, user_id, app, session_id, started_at, ended_at, true as is_match
    from {{ ref('int_sessions_merged') }}
    {% if is_incremental() %}
    where (org_id, user_id, app) in (select org_id, user_id, app from outcomes)
    {% endif %}
),

-- the sessions a session id can find (a filter of their own: an OR with the one above would read
-- every session through both)
id_sessions as (
    select session_uid, org_id, session_id, started_at, true as is_match
    from {{ ref('int_sessions_merged') }}
    where session_id != ''
    {% if is_incremental() %}
        and (org_id, session_id) in (select org_id, session_id from outcomes where session_id != '')
    {% endif %}
),

trace_calls as (
    select org_id, trace_id, occurred_at, session_uid, true as is_match
    from {{ ref('int_calls_sessionized') }}
    where trace_id != '' and session_uid != ''
    {% if is_incremental() %}
        and (org_id, trace_id) in (select org_id, trace_id from outcomes)
    {% endif %}
),

by_session_id as (
    select o.outcome_id as outcome_id, s.session_uid as session_uid, s.is_match as is_match
    from (select * from outcomes where session_id != '') as o
    asof left join id_sessions as s
        on o.org_id = s.org_id and o.session_id = s.session_id and o.occurred_at >= s.started_at
),

by_trace_id as (
    select o.outcome_id as outcome_id, t.session_uid as session_uid, t.is_match as is_match
    from (select * from outcomes where trace_id != '') as o
    asof left join trace_calls as t
        on o.org_id = t.org_id and o.trace_id = t.trace_id and o.occurred_at >= t.occurred_at
),

by_user_time as (
    select
        o.outcome_id as outcome_id,
        s.session_uid as session_uid,
        s.is_match and s.ended_at >= o.occurred_at - interval {{ window_h }} hour as is_match
    from outcomes as o
    asof left join sessions as s
        on o.org_id = s.org_id and o.user_id = s.user_id and o.app = s.app
        and o.occurred_at >= s.started_at
)

select
    o.outcome_id as outcome_id,
    multiIf(sid.is_match, sid.session_uid, tid.is_match, tid.session_uid,
            ut.is_match, ut.session_uid, '') as session_uid,
    multiIf(sid.is_match, 'session_id', tid.is_match, 'trace_id',
            ut.is_match, 'user_time', 'unattributed') as attribution_method
from outcomes as o
left join by_session_id as sid on o.outcome_id = sid.outcome_id
left join by_trace_id as tid on o.outcome_id = tid.outcome_id
left join by_user_time as ut on o.outcome_id = ut.outcome_id
