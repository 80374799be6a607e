{{ config(materialized='table', order_by='(kind, key)', post_hook='{{ scope_days() }}') }}
-- depends_on: {{ ref('int_calls_sessionized') }} (scope_days reads it)

-- What the incremental marts rebuild in this build (macros/incremental.sql), one row per key;
-- built after the intermediate models rebuilt the changed keys and the attribution:
--   session_key: the changed keys (int_changed_keys: their calls or fragments changed), the keys
--     of the sessions that gained or lost an outcome, or whose outcome changed (the attribution
--     and fields of each outcome int_changed_keys lists, now against the previous build's
--     fct_outcomes), and the keys of the idle sessions and session-less calls of an app whose
--     outcome type (int_app_outcome_types) changed;
--   outcome_id: the outcomes int_changed_keys lists (their session, or its model, cost or tokens,
--     may change);
--   day: the days that hold a row of those keys, before or after this build (macros/incremental.sql,
--     scope_days, a post-hook): what the marts by day and week rebuild.
-- The previous build's fct_outcomes, fct_sessions and fct_calls are read by name (they are
-- rebuilt after this). They are what the last finished build left only if no build got past
-- this model since without finishing (one whose tests failed, or a --select build): each build
-- writes its start here (kind 'attempt'), and when the last one is newer than the ledger's, or a
-- mart is missing, every key is rebuilt. Otherwise empty on a full build (nothing reads it then).
{% set ledger = incremental_ledger() %}
{% set previous = {} %}
{% for name in ['fct_outcomes', 'fct_sessions', 'fct_calls'] %}
    {% do previous.update({name: relation_named(name) if execute else none}) %}
{% endfor %}
{% set unfinished = false %}
{% if execute and ledger is not none and none not in previous.values() %}
    {% set scope = relation_named(this.identifier) %}
    {% if scope is not none %}
        {% set unfinished = run_query("select (select max(key) from " ~ scope ~ " where kind = 'attempt') > "
                                      ~ "(select toString(max(built_at)) from " ~ ledger ~ ")").rows[0][0] %}
    {% endif %}
{% endif %}
{% set attempt = build_started_at() %}
{% set changed_outcomes %}(select key from {{ ref('int_changed_keys') }} where kind = 'outcome_id'){% endset %}

select 'attempt' as kind, '{{ attempt }}' as key
union all
select kind, key from (
{% if execute and ledger is none %}
select CAST('' AS String) as kind, CAST('' AS String) as key where false
{% elif execute and (unfinished or none in previous.values()) %}
select 'session_key' as kind, session_key as key
from (
    select session_key from {{ source('warehouse', 'calls') }}
    union distinct
    select session_key from {{ source('warehouse', 'sessions') }}
)
union all
select 'outcome_id', outcome_id from (select distinct outcome_id from {{ source('warehouse', 'outcomes') }})
{% else %}
with outcomes_now as (
    select outcome_id, session_uid, occurred_at, outcome_type, is_success, ifNull(toString(value_usd), '') as value_usd
    from {{ ref('int_outcome_attribution') }}
    where outcome_id in {{ changed_outcomes }}
),

outcomes_before as (
    select outcome_id as b_outcome_id, session_uid as b_session_uid, occurred_at as b_occurred_at,
        outcome_type as b_outcome_type, is_success as b_is_success, ifNull(toString(value_usd), '') as b_value_usd
    from {{ previous['fct_outcomes'] }}
    where outcome_id in {{ changed_outcomes }}
),

-- what fct_sessions reads of an outcome: its session, time, type, success and value
moved_outcomes as (
    select n.session_uid as session_uid, b.b_session_uid as previous_session_uid
    from outcomes_now as n
    full join outcomes_before as b on n.outcome_id = b.b_outcome_id
    where (n.session_uid, n.occurred_at, n.outcome_type, n.is_success, n.value_usd)
        != (b.b_session_uid, b.b_occurred_at, b.b_outcome_type, b.b_is_success, b.b_value_usd)
        or n.outcome_id != b.b_outcome_id
),

-- an app's outcome type (int_app_outcome_types) names its idle sessions and session-less calls
app_types as (
    select org_id as a_org_id, app as a_app, outcome_type as a_outcome_type
    from {{ ref('int_app_outcome_types') }}
),

retyped_apps as (
    select distinct s.org_id as org_id, s.app as app
    from {{ previous['fct_sessions'] }} as s
    left join app_types as a on s.org_id = a.a_org_id and s.app = a.a_app
    where s.outcomes = 0 and s.outcome_type != a.a_outcome_type
    union distinct
    select distinct c.org_id, c.app
    from {{ previous['fct_calls'] }} as c
    left join app_types as a on c.org_id = a.a_org_id and c.app = a.a_app
    where c.session_uid = '' and c.outcome_type != a.a_outcome_type
)

select 'session_key' as kind, session_key as key
from (
    select key as session_key from {{ ref('int_changed_keys') }} where kind = 'session_key'
    union distinct
    -- the sessions that now hold a moved outcome and those that held one, as int_sessions_merged
    -- stands after this build (it changed only in changed keys: a session merged away is a
    -- changed key's, any other kept its uid and key)
    select session_key from {{ ref('int_sessions_merged') }}
    where session_uid in (
        select arrayJoin([session_uid, previous_session_uid]) as uid from moved_outcomes where uid != '')
    union distinct
    select distinct session_key
    from {{ source('warehouse', 'calls') }}
    where (org_id, app) in (select org_id, app from retyped_apps)
)
union all
select kind, key from {{ ref('int_changed_keys') }} where kind = 'outcome_id'
{% endif %}
)
