-- Every call with the session it belongs to. An on-time call lies inside a closed session of its
-- key (the latest one starting at or before it); a late call is in the session its correction
-- was merged into. A call whose session has not closed yet (a continuous run) gets ''.
with calls as (
    select * from {{ ref('stg_calls') }}
),

closed as (
    select session_key, fragment_uid as session_uid, started_at, ended_at, true as is_match
    from {{ ref('stg_sessions') }}
    where not is_correction
),

on_time as (
    select
        c.*,
        if(s.is_match and c.occurred_at <= s.ended_at, s.session_uid, '') as session_uid
    from (select * from calls where not is_late) as c
    asof left join closed as s
        on c.session_key = s.session_key and c.occurred_at >= s.started_at
),

late as (
    select c.* except (fragment_uid), f.session_uid as session_uid
    from (
        select *, lower(hex(MD5(concat('late|', event_id)))) as fragment_uid
        from calls where is_late
    ) as c
    left join {{ ref('int_session_fragments') }} as f on c.fragment_uid = f.fragment_uid
)

select * from on_time
union all
select * from late
