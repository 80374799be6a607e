-- The outcome type each app of each org produces most: what its sessions are judged by when
-- they produced nothing (an idle support-bot session is an unresolved ticket).
select
    org_id,
    app,
    argMax(outcome_type, outcomes) as outcome_type
from (
    select org_id, app, outcome_type, count() as outcomes
    from {{ ref('stg_outcomes') }}
    group by org_id, app, outcome_type
)
group by org_id, app
