-- The outcome type each app of each org produces most: what its sessions are judged by when
-- they produced nothing (an idle support-bot session is an unresolved ticket). Of types with as
-- many outcomes, the one named first: the same on every build.
select
    org_id,
    app,
    argMin(outcome_type, (-toInt64(outcomes), outcome_type)) as outcome_type
from (
    select org_id, app, outcome_type, count() as outcomes
    from {{ ref('stg_outcomes') }}
    group by org_id, app, outcome_type
)
group by org_id, app
