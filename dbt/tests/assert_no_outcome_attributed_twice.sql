{{ config(tags=['full_history']) }}
-- Every outcome appears exactly once in the attribution, and the sessions' outcome counts add up
-- to the attributed outcomes: no outcome is counted for two sessions. Returns offending rows.
with stored as (
    select outcome_id from {{ ref('stg_outcomes') }}
),

attributed as (
    select outcome_id, count() as times
    from {{ ref('fct_outcome_attributions') }}
    group by outcome_id
),

missing_or_doubled as (
    select s.outcome_id as outcome_id, a.times as times
    from stored as s
    left join attributed as a on s.outcome_id = a.outcome_id
    where a.times != 1
),

per_session as (
    select sum(outcomes) as counted from {{ ref('fct_sessions') }}
),

attributed_to_sessions as (
    select count() as attributed from {{ ref('fct_outcome_attributions') }} where session_uid != ''
)

select outcome_id, toInt64(times) as difference from missing_or_doubled
union all
select 'sessions vs attributions', toInt64(p.counted) - toInt64(a.attributed)
from per_session as p cross join attributed_to_sessions as a
where p.counted != a.attributed
