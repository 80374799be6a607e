{{ config(materialized='table', order_by='(kind, key)', post_hook='{{ changed_outcomes() }}') }}
-- depends_on: {{ source('warehouse', 'outcomes') }} (changed_outcomes reads it)

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
--     Added by the post-hook (changed_outcomes, macros/incremental.sql) from the session keys
--     stored here: a CTE would compute the session keys again for every link.
-- Empty on a full build (nothing reads it then).
{% set ledger = incremental_ledger() %}
{% set calls = source('warehouse', 'calls') %}
{% set sessions = source('warehouse', 'sessions') %}

{% if execute and ledger is none %}
select CAST('' AS String) as kind, CAST('' AS String) as key where false
{% else %}
{% set since = changed_since(ledger) %}

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
    where {{ calls_sorting_key() }} in (
        select {{ calls_sorting_key() }} from {{ calls }}
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
)

select 'session_key' as kind, session_key as key from changed_keys
{% endif %}
