{{ config(order_by='(org_id, app, outcome_type, model)') }}

-- Per org, app and outcome type, each model's success rate (sessions with a successful outcome
-- / sessions) and cost per successful outcome, against the cheapest other model that succeeds
-- as often: the data show no evidence, at overkill_confidence_z standard errors, that this model
-- succeeds more often by more than the tolerance. Sessions count under their primary model.
-- Models with unpriced calls are never compared: their cost per outcome is unknown, not low.
{% set tolerance = var('overkill_success_tolerance') %}
{% set min_sessions = var('overkill_min_sessions') | int %}
{% set z = var('overkill_confidence_z') %}

with per_model as (
    select
        org_id,
        app,
        outcome_type,
        primary_model as model,
        arraySort(groupUniqArray(team)) as teams,
        count() as sessions,
        countIf(successful_outcomes > 0) as successful_sessions,
        sum(successful_outcomes) as successful_outcomes,
        sum(calls) as calls,
        sum(unpriced_calls) as unpriced_calls,
        sum(total_tokens) as total_tokens,
        CAST(sum(cost_usd) AS Decimal(38, 21)) as cost_usd
    from {{ ref('fct_sessions') }}
    where primary_model != ''
    group by org_id, app, outcome_type, primary_model
),

rated as (
    select
        *,
        successful_sessions / sessions as success_rate,
        sqrt(success_rate * (1 - success_rate) / sessions) as standard_error,
        {{ cost_per_successful_outcome_usd() }} as cost_per_successful_outcome_usd,
        {{ as_bool('unpriced_calls = 0 and sessions >= ' ~ min_sessions ~ ' and successful_outcomes > 0') }}
            as is_comparable
    from per_model
),

-- for each comparable model, the cheapest other comparable model that succeeds as often (ties:
-- the model named first), as `cheaper`: (model, cost per successful outcome, success rate,
-- sessions, standard error, is comparable). Its peers come from a window over `rated`, not from
-- a join of `rated` with itself: ClickHouse computes a CTE once per reference, so the join read
-- every session of fct_sessions three times (at 10M calls 1.0 s of CPU; 0.4 s this way).
alternatives as (
    select
        *,
        arraySort(alt -> (alt.2, alt.1), arrayFilter(alt ->
            is_comparable and alt.6 and alt.1 != model
            and alt.2 < assumeNotNull(cost_per_successful_outcome_usd)
            and alt.3 >= success_rate - {{ tolerance }} - {{ z }} * sqrt(pow(standard_error, 2) + pow(alt.5, 2)),
            groupArray(tuple(model, assumeNotNull(cost_per_successful_outcome_usd), success_rate, sessions, standard_error,
                             is_comparable)) over (partition by org_id, app, outcome_type)))[1] as cheaper
    from rated
)

select
    r.org_id as org_id,
    r.app as app,
    r.outcome_type as outcome_type,
    r.model as model,
    r.teams as teams,
    r.sessions as sessions,
    r.successful_sessions as successful_sessions,
    r.successful_outcomes as successful_outcomes,
    r.calls as calls,
    r.unpriced_calls as unpriced_calls,
    r.total_tokens as total_tokens,
    r.cost_usd as cost_usd,
    r.success_rate as success_rate,
    r.cost_per_successful_outcome_usd as cost_per_successful_outcome_usd,
    r.is_comparable as is_comparable,
    {{ as_bool("r.cheaper.1 != ''") }} as is_overkill,
    nullIf(r.cheaper.1, '') as cheaper_model,
    if(is_overkill, r.cheaper.3, NULL) as cheaper_success_rate,
    if(is_overkill, r.cheaper.2, NULL) as cheaper_cost_per_successful_outcome_usd,
    if(is_overkill, r.cheaper.4, NULL) as cheaper_sessions,
    if(is_overkill, r.success_rate - r.cheaper.3, NULL) as success_rate_gap,
    -- how far the gap is inside the allowance: tolerance + z standard errors of the difference
    if(is_overkill, {{ tolerance }} + {{ z }} * sqrt(pow(r.standard_error, 2) + pow(r.cheaper.5, 2)), NULL)
        as allowed_gap,
    -- what the same successful outcomes would have cost at the cheaper model's cost per outcome
    if(is_overkill,
       CAST(r.cost_usd - r.successful_outcomes * r.cheaper.2 AS Decimal(38, 12)),
       NULL) as estimated_saving_usd,
    {{ tolerance }} as success_tolerance
from alternatives as r
