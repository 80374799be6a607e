{{ config(order_by='(month, org_id, team, app, outcome_type)') }}

-- Cost per successful outcome against each outcome budget, per month: the scope's spend on
-- calls whose session had (or whose app usually has) the outcome type, over its successful
-- outcomes of that type in the month.
with budgets as (
    -- cost_per_outcome budgets (`yieldmeter budgets set --kind cost_per_outcome`)
    -- (cast to the contract's types: the table stores LowCardinality strings and Decimal(21, 9))
    select CAST(org_id AS String) as org_id, if(team = '', '*', team) as team, app,
        CAST(outcome_type AS String) as outcome_type, CAST(limit_usd AS Decimal(38, 9)) as max_cost_per_outcome_usd
    from {{ ref('stg_budgets') }}
    where kind = 'cost_per_outcome'
),

spend as (
    select org_id, team, app, outcome_type, toStartOfMonth(day) as month,
        sum(cost_usd) as cost_usd, countIf(not is_priced) as unpriced_calls
    from {{ ref('fct_calls') }}
    group by org_id, team, app, outcome_type, month
),

results as (
    select org_id, team, app, outcome_type, toStartOfMonth(day) as month,
        count() as outcomes, countIf(is_success) as successful_outcomes
    from {{ ref('fct_outcomes') }}
    group by org_id, team, app, outcome_type, month
),

scoped_spend as (
    select b.org_id as org_id, b.team as team, b.app as app, b.outcome_type as outcome_type,
        s.month as month, sum(s.cost_usd) as cost_usd, sum(s.unpriced_calls) as unpriced_calls
    from budgets as b
    inner join spend as s on b.org_id = s.org_id and b.app = s.app and b.outcome_type = s.outcome_type
    where b.team = '*' or b.team = s.team
    group by b.org_id, b.team, b.app, b.outcome_type, s.month
),

scoped_results as (
    select b.org_id as org_id, b.team as team, b.app as app, b.outcome_type as outcome_type,
        r.month as month, sum(r.outcomes) as outcomes, sum(r.successful_outcomes) as successful_outcomes
    from budgets as b
    inner join results as r on b.org_id = r.org_id and b.app = r.app and b.outcome_type = r.outcome_type
    where b.team = '*' or b.team = r.team
    group by b.org_id, b.team, b.app, b.outcome_type, r.month
)

select
    s.org_id as org_id,
    s.team as team,
    s.app as app,
    s.outcome_type as outcome_type,
    s.month as month,
    b.max_cost_per_outcome_usd as max_cost_per_outcome_usd,
    CAST(s.cost_usd AS Decimal(38, 21)) as cost_usd,
    s.unpriced_calls as unpriced_calls,
    r.outcomes as outcomes,
    r.successful_outcomes as successful_outcomes,
    {{ is_fully_priced('s.unpriced_calls') }} as is_fully_priced,
    {{ cost_per_successful_outcome_usd('s.cost_usd', 'r.successful_outcomes', 's.unpriced_calls') }}
        as cost_per_successful_outcome_usd,
    -- what the month spent beyond the allowance for the outcomes it got (with unpriced calls the
    -- spend is a lower bound: an excess is real, its size at least this)
    CAST(greatest(s.cost_usd - r.successful_outcomes * b.max_cost_per_outcome_usd, 0) AS Decimal(38, 12))
        as excess_usd,
    {{ as_bool('s.cost_usd > r.successful_outcomes * b.max_cost_per_outcome_usd') }} as is_over_budget
from scoped_spend as s
inner join budgets as b
    on s.org_id = b.org_id and s.team = b.team and s.app = b.app and s.outcome_type = b.outcome_type
left join scoped_results as r
    on s.org_id = r.org_id and s.team = r.team and s.app = r.app and s.outcome_type = r.outcome_type
    and s.month = r.month
