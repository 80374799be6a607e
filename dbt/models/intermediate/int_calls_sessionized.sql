-- Every call, as priced now (int_calls_priced), with the session it belongs to. A call the
-- sessionizer received after its session had closed came back as a correction (fragment
-- md5('late|' + event_id)) and is in the session that correction was merged into; any other
-- call lies inside the closed session of its key that started last before it (and in the
-- session that one was merged into). A call whose session has not closed yet (a continuous
-- run) gets ''. Which calls were late is read from the corrections themselves, not from a
-- flag, so it holds whichever job decided it. One pass over the calls: both lookups are joins
-- (pricing every call twice, once per kind, cost more than the ASOF join a correction skips).
-- depends_on: {{ ref('int_changed_keys') }}
-- Incremental by session key: every input of a call (its price, its key's fragments) is filtered
-- by it (ClickHouse pushes the filters into int_calls_priced's view; changed_calls lets the FINAL
-- under it read only the granules of those calls).
with calls as (
    select *, lower(hex(MD5(concat('late|', event_id)))) as correction_uid
    from {{ ref('int_calls_priced') }}
    where {{ in_changed_keys('session_key') }} and {{ changed_calls() }}
),

corrections as (
    select fragment_uid as f_fragment_uid, session_uid as f_session_uid, true as f_is_match
    from {{ ref('int_session_fragments') }}
    where is_correction and {{ in_changed_keys('session_key') }}
),

-- closed sessions with the session they ended up in (late calls may have joined two)
closed as (
    select s.session_key as s_session_key, m.session_uid as s_session_uid, s.started_at as s_started_at,
        s.ended_at as s_ended_at, true as s_is_match
    from {{ ref('stg_sessions') }} as s
    inner join {{ ref('int_session_fragments') }} as m on s.fragment_uid = m.fragment_uid
    where not s.is_correction and {{ in_changed_keys('s.session_key') }} and {{ in_changed_keys('m.session_key') }}
),

with_correction as (
    select c.*, f.*
    from calls as c
    left join corrections as f on c.correction_uid = f.f_fragment_uid
),

placed as (
    select c.*, s.*
    from with_correction as c
    asof left join closed as s
        on c.session_key = s.s_session_key and c.occurred_at >= s.s_started_at
)

select
    * except ('^[fs]_|^correction_uid$'),
    multiIf(f_is_match, f_session_uid, s_is_match and occurred_at <= s_ended_at, s_session_uid, '') as session_uid,
    {{ as_bool('f_is_match') }} as is_session_correction
from placed
