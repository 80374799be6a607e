-- Which session each fragment belongs to: the session window rule applied again, now that the
-- late calls are here. Per session key, fragments in time order join the session before them
-- when they start at most `gap` after its last call so far (so a late call joins the closed
-- session whose [started_at - gap, ended_at + gap] holds it, late calls next to each other
-- form one session, and a late call that bridges two sessions joins them, as it would have on
-- time). Two closed sessions are never joined directly: the pipeline split them on purpose.
-- A session is named by its first closed session's uid, else by its first late call's.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='session_key',
          order_by='(session_key, fragment_uid)') }}
-- depends_on: {{ ref('int_changed_keys') }}
-- Incremental by session key (macros/incremental.sql): a key's fragments are all its merge reads.
{% set gap = var('session_gap_minutes') | int %}

with fragments as (
    select fragment_uid, session_key, is_correction, started_at, ended_at
    from {{ ref('stg_sessions') }}
    where {{ in_changed_keys('session_key') }}
),

ordered as (
    select
        *,
        row_number() over key_order as position,
        max(ended_at) over (key_order rows between unbounded preceding and 1 preceding) as previous_end,
        lagInFrame(is_correction) over (key_order rows between unbounded preceding and unbounded following)
            as previous_is_correction
    from fragments
    window key_order as (partition by session_key order by started_at, fragment_uid)
),

grouped as (
    select
        *,
        sum(toUInt64(
            position = 1
            or started_at > previous_end + interval {{ gap }} minute
            or (not is_correction and not previous_is_correction)
        )) over (partition by session_key order by started_at, fragment_uid rows unbounded preceding) as session_number
    from ordered
)

select
    fragment_uid,
    session_key,
    argMin(fragment_uid, (is_correction, started_at, fragment_uid))
        over (partition by session_key, session_number) as session_uid,
    is_correction
from grouped
