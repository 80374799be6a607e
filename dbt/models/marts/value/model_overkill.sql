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

alternatives as (
    -- for each comparable model, the cheapest other comparable model that succeeds as often
    select
        m.org_id as org_id,
        m.app as app,
        m.outcome_type as outcome_type,
        m.model as model,
        argMin(alt.model, alt.cpo) as cheaper_model,
        argMin(alt.success_rate, alt.cpo) as cheaper_success_rate,
        min(alt.cpo) as cheaper_cost_per_successful_outcome_usd,
        argMin(alt.sessions, alt.cpo) as cheaper_sessions,
        argMin(alt.standard_error, alt.cpo) as cheaper_standard_error
    from rated as m
    inner join (select *, assumeNotNull(cost_per_successful_outcome_usd) as cpo from rated where is_comparable) as alt
        on m.org_id = alt.org_id and m.app = alt.app and m.outcome_type = alt.outcome_type
    where m.is_comparable and alt.is_comparable
        and alt.model != m.model
        and alt.cpo < m.cost_per_successful_outcome_usd
        and alt.success_rate >= m.success_rate - {{ tolerance }}
            - {{ z }} * sqrt(pow(m.standard_error, 2) + pow(alt.standard_error, 2))
    group by m.org_id, m.app, m.outcome_type, m.model
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
    {{ as_bool("a.cheaper_model != ''") }} as is_overkill,
    nullIf(a.cheaper_model, '') as cheaper_model,
    if(is_overkill, a.cheaper_success_rate, NULL) as cheaper_success_rate,
    if(is_overkill, a.cheaper_cost_per_successful_outcome_usd, NULL) as cheaper_cost_per_successful_outcome_usd,
    if(is_overkill, a.cheaper_sessions, NULL) as cheaper_sessions,
    if(is_overkill, r.success_rate - a.cheaper_success_rate, NULL) as success_rate_gap,
    -- how far the gap is inside the allowance: tolerance + z standard errors of the difference
    if(is_overkill, {{ tolerance }} + {{ z }} * sqrt(pow(r.standard_error, 2) + pow(a.cheaper_standard_error, 2)), NULL)
        as allowed_gap,
    -- what the same successful outcomes would have cost at the cheaper model's cost per outcome
    if(is_overkill,
       CAST(r.cost_usd - r.successful_outcomes * a.cheaper_cost_per_successful_outcome_usd AS Decimal(38, 12)),
       NULL) as estimated_saving_usd,
    {{ tolerance }} as success_tolerance
from rated as r
left join alternatives as a
    on r.org_id = a.org_id and r.app = a.app and r.outcome_type = a.outcome_type and r.model = a.model
