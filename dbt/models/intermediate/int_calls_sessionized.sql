-- Every call with the session it belongs to. A call the sessionizer received after its session
-- had closed came back as a correction (fragment md5('late|' + event_id)) and is in the session
-- that correction was merged into; any other call lies inside the closed session of its key
-- that started last before it (and in the session that one was merged into). A call whose session has not closed yet (a continuous run)
-- gets ''. Which calls were late is read from the corrections themselves, not from a flag, so
-- it holds whichever job decided it.
with calls as (
    select *, lower(hex(MD5(concat('late|', event_id)))) as correction_uid
    from {{ ref('stg_calls') }}
),

corrections as (
    select fragment_uid, session_uid
    from {{ ref('int_session_fragments') }}
    where is_correction
),

-- closed sessions with the session they ended up in (late calls may have joined two)
closed as (
    select s.session_key as session_key, m.session_uid as session_uid, s.started_at as started_at,
        s.ended_at as ended_at, true as is_match
    from {{ ref('stg_sessions') }} as s
    inner join {{ ref('int_session_fragments') }} as m on s.fragment_uid = m.fragment_uid
    where not s.is_correction
),

in_windows as (
    select
        c.* except (correction_uid),
        if(s.is_match and c.occurred_at <= s.ended_at, s.session_uid, '') as session_uid,
        false as is_session_correction
    from (select * from calls where correction_uid not in (select fragment_uid from corrections)) as c
    asof left join closed as s
        on c.session_key = s.session_key and c.occurred_at >= s.started_at
),

corrected as (
    select c.* except (correction_uid), f.session_uid as session_uid, true as is_session_correction
    from (select * from calls where correction_uid in (select fragment_uid from corrections)) as c
    inner join corrections as f on c.correction_uid = f.fragment_uid
)

select * from in_windows
union all
select * from corrected
