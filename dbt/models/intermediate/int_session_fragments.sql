-- Which session each fragment belongs to. A closed session is its own session. A late call
-- (correction) joins the closed session of the same key whose [started_at - gap, ended_at + gap]
-- holds it, the same rule the pipeline's session window would have applied; else it stands alone.
-- ASOF picks the latest session starting before the call + gap: sessions of one key never
-- overlap, so if that one ended more than a gap before the call, no earlier one can hold it.
{% set gap = var('session_gap_minutes') | int %}

with fragments as (
    select * from {{ ref('stg_sessions') }}
),

closed as (
    select session_key, fragment_uid as session_uid, started_at, ended_at, true as is_match
    from fragments
    where not is_correction
),

corrections as (
    select fragment_uid, session_key, started_at, started_at + interval {{ gap }} minute as probe_at
    from fragments
    where is_correction
),

placed as (
    select
        c.fragment_uid as fragment_uid,
        if(s.is_match and c.started_at <= s.ended_at + interval {{ gap }} minute,
           s.session_uid, c.fragment_uid) as session_uid
    from corrections as c
    asof left join closed as s
        on c.session_key = s.session_key and c.probe_at >= s.started_at
)

select
    f.fragment_uid as fragment_uid,
    if(f.is_correction, p.session_uid, f.fragment_uid) as session_uid,
    f.is_correction as is_correction
from fragments as f
left join placed as p on f.fragment_uid = p.fragment_uid
