{{ config(materialized='table', order_by='(kind, key)') }}

-- What changed since the last finished build (int_incremental_builds), one row per key: what the
-- intermediate models by session key and the attribution rebuild (macros/incremental.sql);
-- int_rebuild_scope widens it for the marts.
-- Changes are the rows ingested since that build started, less var incremental_lookback_minutes
-- (an insert under way while it read; the clock of a server): a key rebuilt twice costs a little,
-- a key missed would be wrong. The sources are read without FINAL: a key is all that is needed.
--   session_key: a new call or session fragment (a late call may extend or join sessions of its
--     key; a re-delivered call is rebuilt once, in its old key too), or a call that a price or discount published
--     since may reprice (its provider and model, or its org, from its effective_from on).
--   outcome_id: a new outcome, or one a changed session key may now take or lose: the same org
--     and session id or trace, or the same user and app, not before the key's first session.
-- Empty on a full build (nothing reads it then).
{% set ledger = incremental_ledger() %}
{% set lookback = var('incremental_lookback_minutes') | int %}
{% set calls = source('warehouse', 'calls') %}
{% set sessions = source('warehouse', 'sessions') %}
{% set outcomes = source('warehouse', 'outcomes') %}

{% if execute and (ledger is none or flags.FULL_REFRESH) %}
select CAST('' AS String) as kind, CAST('' AS String) as key where false
{% else %}
{% set since %}(select max(built_at) - interval {{ lookback }} minute from {{ ledger }}){% endset %}

with new_prices as (
    select provider, model, min(effective_from) as effective_from
    from {{ source('warehouse', 'prices') }}
    where _ingested_at >= {{ since }}
    group by provider, model
),

new_discounts as (
    select org_id, provider, min(effective_from) as effective_from
    from {{ source('warehouse', 'org_discounts') }}
    where _ingested_at >= {{ since }}
    group by org_id, provider
),

changed_keys as (
    select session_key from {{ calls }} where _ingested_at >= {{ since }}
    union distinct
    -- the keys of a new call's older versions (a call stored again under another session id
    -- leaves its old key), found by the calls table's sorting key, which every version shares
    select session_key from {{ calls }}
    where (org_id, team, app, toStartOfHour(occurred_at), event_id) in (
        select org_id, team, app, toStartOfHour(occurred_at), event_id from {{ calls }}
        where _ingested_at >= {{ since }})
    union distinct
    select session_key from {{ sessions }} where _ingested_at >= {{ since }}
    union distinct
    -- int_calls_priced looks a price up by provider and model (the call's tier, else the default one)
    select c.session_key
    from {{ calls }} as c
    inner join new_prices as p on c.provider = p.provider and c.model = p.model
    where c.occurred_at >= p.effective_from
    union distinct
    select c.session_key
    from {{ calls }} as c
    inner join new_discounts as d on c.org_id = d.org_id
    where (d.provider = '*' or d.provider = c.provider) and c.occurred_at >= d.effective_from
),

changed_fragments as (
    select org_id, user_id, app, session_id, started_at
    from {{ sessions }}
    where session_key in (select session_key from changed_keys)
),

changed_traces as (
    select distinct org_id, trace_id
    from {{ calls }}
    where trace_id != '' and session_key in (select session_key from changed_keys)
),

-- each link read on its own: one filter that ORs them reads every outcome through all of them
outcome_ids as (
    select outcome_id from {{ outcomes }} where _ingested_at >= {{ since }}
    union distinct
    select outcome_id from {{ outcomes }}
    where session_id != '' and (org_id, session_id) in (
        select org_id, session_id from changed_fragments where session_id != '')
    union distinct
    select outcome_id from {{ outcomes }}
    where trace_id != '' and (org_id, trace_id) in (select org_id, trace_id from changed_traces)
    union distinct
    -- by user and time: only outcomes at or after the first of the changed sessions can move
    select o.outcome_id
    from {{ outcomes }} as o
    inner join (
        select org_id, user_id, app, min(started_at) as first_started_at
        from changed_fragments
        group by org_id, user_id, app
    ) as k on o.org_id = k.org_id and o.user_id = k.user_id and o.app = k.app
    where o.occurred_at >= k.first_started_at
)

select 'session_key' as kind, session_key as key from changed_keys
union all
select 'outcome_id', outcome_id from outcome_ids
{% endif %}
