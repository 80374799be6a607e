{# Each session of the keys a mart rebuilds (every session on a full build) with the outcomes
   attributed to it (int_outcome_attribution, which carries their fields), its outcome type (its
   first outcome's, else its app's: int_app_outcome_types) and whether it is idle: what
   fct_sessions shows of its outcomes and fct_calls reads of its session. A query (for a CTE)
   rather than a model: each mart computes it, in its own incremental scope, so fct_calls need
   not wait for fct_sessions to be built and tested (0.2 s of work twice instead of 1.2 s in a
   row, at 10M calls). #}
{% macro session_outcomes() -%}
    with so_sessions as (
        select session_uid, org_id, app from {{ ref('int_sessions_merged') }}
        where {{ in_rebuild_scope('session_key') }}
    ),

    so_outcomes as (
        select
            session_uid,
            count() as outcomes,
            countIf(is_success) as successful_outcomes,
            sumIf(value_usd, is_success) as outcome_value_usd,
            argMin(outcome_type, (occurred_at, outcome_id)) as first_outcome_type,  -- a tie: the first id
            min(occurred_at) as first_outcome_at
        from {{ ref('int_outcome_attribution') }}
        where session_uid != ''
        {% if is_incremental() %}and session_uid in (select session_uid from so_sessions){% endif %}
        group by session_uid
    )

    select
        s.session_uid as session_uid,
        o.outcomes as outcomes,
        o.successful_outcomes as successful_outcomes,
        o.outcome_value_usd as outcome_value_usd,
        o.first_outcome_at as first_outcome_at,
        if(o.outcomes != 0, o.first_outcome_type, t.outcome_type) as outcome_type,
        o.outcomes = 0 as is_idle
    from so_sessions as s
    left join so_outcomes as o on s.session_uid = o.session_uid
    left join {{ ref('int_app_outcome_types') }} as t on s.org_id = t.org_id and s.app = t.app
{%- endmacro %}
