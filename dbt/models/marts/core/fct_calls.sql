{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='session_key',
          order_by='(org_id, team, app, occurred_at, event_id)', partition_by='toMonday(occurred_at)',
          query_settings={'join_use_nulls': 0, 'prefer_column_name_to_alias': 1, 'max_partitions_per_insert_block': 0}) }}
-- A partition a week: a build's delete (a lightweight DELETE: it rewrites the row mask of every
-- part holding a rebuilt day) touches the rebuilt days' weeks, not their month (0.8 s of CPU
-- against 0.4 s at 10M calls). Its query settings: no cap on the partitions an insert writes (a
-- full build of more than 100 weeks writes that many), and the project's again (dbt_project.yml:
-- a model's query_settings replace the project's, they are not merged).

-- Calls with their session, and the session's outcome type and idleness, so every mart that
-- sums calls can split spend by outcome type and by idle versus productive sessions.
-- (Joined columns are renamed: a name on both sides would come out as c.<name>.)
-- Incremental by session key (macros/incremental.sql).
-- depends_on: {{ ref('int_rebuild_scope') }}
with calls as (
    select * from {{ ref('int_calls_sessionized') }}
    where {{ in_rebuild_scope('session_key') }}
),

-- the session's outcome type and idleness, as fct_sessions has them (macros/sessions.sql)
sessions as (
    select session_uid as s_session_uid, outcome_type as session_outcome_type, is_idle as is_idle
    from ({{ session_outcomes() }})
),

app_types as (
    select org_id as a_org_id, app as a_app, outcome_type as app_outcome_type
    from {{ ref('int_app_outcome_types') }}
)

select
    -- the stream's own values (recorded_*) are in repricing_audit
    c.* except ('^recorded_'),
    toDate(c.occurred_at) as day,
    if(c.session_uid != '', s.session_outcome_type, a.app_outcome_type) as outcome_type,
    {{ as_bool("c.session_uid != '' and s.is_idle") }} as is_idle_session,
    {{ as_bool("c.status = 'error'") }} as is_error,
    {{ as_bool("c.retry_of != ''") }} as is_retry,
    {{ as_bool("c.pricing_status in ('priced', 'repriced')") }} as is_priced
from calls as c
left join sessions as s on c.session_uid = s.s_session_uid
left join app_types as a on c.org_id = a.a_org_id and c.app = a.a_app
