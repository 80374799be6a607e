{{ config(materialized='table', order_by='(kind, key)') }}

-- What this build rebuilds in the incremental models (macros/incremental.sql), one row per key:
--   session_key: the changed keys (int_changed_keys), the keys of the sessions the changed
--     outcomes were or are now attributed to (a session with their session id, a call with their
--     trace, or their user's and app's session that started by then and ended within the
--     attribution window: int_outcome_attribution's three links), and the keys of the idle
--     sessions and session-less calls of an app whose outcome type (int_app_outcome_types) changed;
--   outcome_id: the changed outcomes (their session, or its model, cost or tokens, may change).
-- The previous build's fct_sessions and fct_calls are read by name (they are rebuilt after this).
-- Empty on a full build (nothing reads it then).
-- depends_on: {{ ref('int_app_outcome_types') }}
{% set window_h = var('attribution_window_hours') | int %}
{% set calls = source('warehouse', 'calls') %}
{% set sessions = source('warehouse', 'sessions') %}
{% set fct_sessions = adapter.get_relation(database=this.database, schema=this.schema, identifier='fct_sessions') if execute else none %}
{% set fct_calls = adapter.get_relation(database=this.database, schema=this.schema, identifier='fct_calls') if execute else none %}

{% if execute and (incremental_ledger() is none or flags.FULL_REFRESH) %}
select CAST('' AS String) as kind, CAST('' AS String) as key where false
{% else %}
with moved_outcomes as (
    select outcome_id, org_id, user_id, app, session_id, trace_id, occurred_at
    from {{ source('warehouse', 'outcomes') }}
    where outcome_id in (select key from {{ ref('int_changed_keys') }} where kind = 'outcome_id')
),
-- the sessions those outcomes were or are attributed to (int_outcome_attribution's three links)
outcome_session_keys as (
    select session_key
    from {{ sessions }}
    where session_id != '' and (org_id, session_id) in (
        select org_id, session_id from moved_outcomes where session_id != '')
    union distinct
    select session_key
    from {{ calls }}
    where trace_id != '' and (org_id, trace_id) in (
        select org_id, trace_id from moved_outcomes where trace_id != '')
    union distinct
    select k.session_key
    from (
        select session_key, any(org_id) as k_org_id, any(user_id) as k_user_id, any(app) as k_app,
            min(started_at) as k_started_at, max(ended_at) as k_ended_at
        from {{ sessions }}
        where (org_id, user_id, app) in (select org_id, user_id, app from moved_outcomes)
        group by session_key
    ) as k
    inner join moved_outcomes as o on k.k_org_id = o.org_id and k.k_user_id = o.user_id and k.k_app = o.app
    where k.k_started_at <= o.occurred_at and k.k_ended_at >= o.occurred_at - interval {{ window_h }} hour
),

-- an app's outcome type (int_app_outcome_types) names its idle sessions and session-less calls
app_types as (
    select org_id as a_org_id, app as a_app, outcome_type as a_outcome_type
    from {{ ref('int_app_outcome_types') }}
),

retyped_apps as (
    {% if fct_sessions is not none and fct_calls is not none %}
    select distinct s.org_id as org_id, s.app as app
    from {{ fct_sessions }} as s
    left join app_types as a on s.org_id = a.a_org_id and s.app = a.a_app
    where s.outcomes = 0 and s.outcome_type != a.a_outcome_type
    union distinct
    select distinct c.org_id, c.app
    from {{ fct_calls }} as c
    left join app_types as a on c.org_id = a.a_org_id and c.app = a.a_app
    where c.session_uid = '' and c.outcome_type != a.a_outcome_type
    {% else %}
    select CAST('' AS String) as org_id, CAST('' AS String) as app where false
    {% endif %}
),

retyped_keys as (
    select distinct session_key
    from {{ calls }}
    where (org_id, app) in (select org_id, app from retyped_apps)
)

select 'session_key' as kind, session_key as key
from (
    select key as session_key from {{ ref('int_changed_keys') }} where kind = 'session_key'
    union distinct
    select session_key from outcome_session_keys
    union distinct
    select session_key from retyped_keys
)
union all
select kind, key from {{ ref('int_changed_keys') }} where kind = 'outcome_id'
{% endif %}
