-- Each outcome's session, found once, in this order:
--   1. session_id: the session of the same org and session id, the latest started by then;
--   2. trace_id: the session of the latest call of the same org and trace before the outcome;
--   3. user_time: the same org's, user's and app's most recent session started before the
--      outcome and ended within the attribution window before it;
--   (of sessions or calls at the same moment, the one whose id hashes highest: asof_time)
--   else unattributed. One row per outcome, so no outcome is counted twice.
-- With the outcome's time, type, success and value: the sessions' marts (session_outcomes) and
-- int_rebuild_scope read them here rather than each joining the outcomes (FINAL) again.
-- Incremental by outcome: the outcomes int_changed_keys lists, against the sessions and calls
-- that share a link with them (all a link can find).
-- depends_on: {{ ref('int_changed_keys') }} {{ source('warehouse', 'outcomes') }}
{% set window_h = var('attribution_window_hours') | int %}

with outcomes as (
    select outcome_id, occurred_at, org_id, user_id, app, session_id, trace_id, outcome_type, is_success, value_usd,
        {{ asof_time('occurred_at') }} as asof_at
    from {{ ref('stg_outcomes') }}
    where {{ in_changed_keys('outcome_id', 'outcome_id') }}
),

{% if is_incremental() %}
-- what the links of those outcomes can be: every stored version's (read without FINAL, a
-- superset), to read only the sessions and calls a link can find. Each is filtered by one
-- column of the link (a superset again: the joins below match the whole link): a tuple with
-- the LowCardinality org_id costs more to look up than the rows it spares (0.94 s against
-- 0.70 s for 92k outcomes over 10M calls).
links as (
    select org_id, user_id, app, session_id, trace_id
    from {{ source('warehouse', 'outcomes') }}
    where {{ in_changed_keys('outcome_id', 'outcome_id') }}
),
{% endif %}

sessions as (
    select session_uid, org_id, user_id, app, started_at, ended_at, true as is_match,
        {{ asof_time('started_at', 'session_uid') }} as asof_at
    from {{ ref('int_sessions_merged') }}
    {% if is_incremental() %}
    where user_id in (select user_id from links)
    {% endif %}
),

-- the sessions a session id can find (a filter of their own: an OR with the one above would read
-- every session through both)
id_sessions as (
    select session_uid, org_id, session_id, true as is_match,
        {{ asof_time('started_at', 'session_uid') }} as asof_at
    from {{ ref('int_sessions_merged') }}
    where session_id != ''
    {% if is_incremental() %}
        and session_id in (select session_id from links where session_id != '')
    {% endif %}
),

trace_calls as (
    select org_id, trace_id, session_uid, true as is_match,
        {{ asof_time('occurred_at', 'event_id') }} as asof_at
    from {{ ref('int_calls_sessionized') }}
    where trace_id != '' and session_uid != ''
    {% if is_incremental() %}
        and trace_id in (select trace_id from links where trace_id != '')
    {% endif %}
),

-- each link in turn, one pass over the outcomes (an outcome without the link matches nothing)
by_session_id as (
    select o.*, s.session_uid as sid_session_uid, s.is_match as sid_is_match
    from outcomes as o
    asof left join id_sessions as s
        on o.org_id = s.org_id and o.session_id = s.session_id and o.asof_at >= s.asof_at
),

by_trace_id as (
    select o.*, t.session_uid as tid_session_uid, t.is_match as tid_is_match
    from by_session_id as o
    asof left join trace_calls as t
        on o.org_id = t.org_id and o.trace_id = t.trace_id and o.asof_at >= t.asof_at
),

by_user_time as (
    select
        o.*,
        s.session_uid as ut_session_uid,
        s.is_match and s.ended_at >= o.occurred_at - interval {{ window_h }} hour as ut_is_match
    from by_trace_id as o
    asof left join sessions as s
        on o.org_id = s.org_id and o.user_id = s.user_id and o.app = s.app and o.asof_at >= s.asof_at
)

select
    outcome_id,
    multiIf(sid_is_match, sid_session_uid, tid_is_match, tid_session_uid,
            ut_is_match, ut_session_uid, '') as session_uid,
    multiIf(sid_is_match, 'session_id', tid_is_match, 'trace_id',
            ut_is_match, 'user_time', 'unattributed') as attribution_method,
    occurred_at,
    outcome_type,
    is_success,
    value_usd
from by_user_time
