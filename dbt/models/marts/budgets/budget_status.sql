{{ config(order_by='(month, org_id, team)') }}

-- Month-to-date and projected month-end spend against each budget. Projection: month-to-date
-- spend scaled by the share of the month elapsed at as_of (a straight line); a finished month's
-- projection is its spend. Budgets apply from the month of the org's first spend to as_of's month.
with as_of as (
    select {{ as_of() }} as as_of_at
),

budgets as (
    -- the monthly spend budgets of an org or of one of its teams (`yieldmeter budgets set`), as
    -- standing budgets; a budget narrowed to a user, app or key, or per day, is the controls
    -- job's alone (usage.controls). Months here are UTC months, whatever the budget's time zone.
    select org_id, if(team = '', '*', team) as team, '*' as month, limit_usd as budget_usd
    from {{ ref('stg_budgets') }}
    where kind = 'spend' and period = 'month' and user_id = '' and app = '' and api_key = ''
),

months as (
    select distinct org_id, toStartOfMonth(day) as month
    from {{ ref('fct_calls') }}
),

candidates as (
    -- a standing budget ('*') for every month of the org's spend; a dated one for its month
    select b.org_id as org_id, b.team as team, m.month as month, b.budget_usd as budget_usd,
        {{ as_bool("b.month = '*'") }} as is_standing
    from budgets as b
    inner join months as m on b.org_id = m.org_id
    where b.month = '*'
    union all
    -- (OrZero: the filter may run after the expression; the seed's test guards the format)
    select org_id, team, toDateOrZero(concat(month, '-01')), budget_usd, false
    from budgets
    where month != '*'
),

chosen as (
    -- a month's own budget replaces the standing one
    select org_id, team, month, argMin(budget_usd, is_standing) as budget_usd, min(is_standing) as is_standing
    from candidates
    where month <= toStartOfMonth((select as_of_at from as_of))
    group by org_id, team, month
),

spend as (
    select org_id, team, toStartOfMonth(day) as month, sum(cost_usd) as cost_usd, count() as calls,
        countIf(not is_priced) as unpriced_calls
    from {{ ref('fct_calls') }}
    where occurred_at <= (select as_of_at from as_of)
    group by org_id, team, month
),

spend_by_scope as (
    select org_id, team, month, cost_usd, calls, unpriced_calls from spend
    union all
    select org_id, '*', month, sum(cost_usd), sum(calls), sum(unpriced_calls) from spend group by org_id, month
),

measured as (
    select
        c.org_id as org_id,
        c.team as team,
        c.month as month,
        c.is_standing as is_standing_budget,
        c.budget_usd as budget_usd,
        CAST(s.cost_usd AS Decimal(38, 21)) as month_to_date_usd,
        s.calls as calls,
        s.unpriced_calls as unpriced_calls,
        (select as_of_at from as_of) as as_of,
        toDateTime64(c.month, 3, 'UTC') as month_start,
        toDateTime64(addMonths(c.month, 1), 3, 'UTC') as month_end,
        dateDiff('second', month_start, least(as_of, month_end)) as elapsed_s,
        dateDiff('second', month_start, month_end) as month_s
    from chosen as c
    left join spend_by_scope as s on c.org_id = s.org_id and c.team = s.team and c.month = s.month
)

select
    org_id,
    team,
    month,
    is_standing_budget,
    budget_usd,
    month_to_date_usd,
    calls,
    unpriced_calls,
    as_of,
    elapsed_s / month_s as month_elapsed_share,
    CAST(if(elapsed_s >= month_s or elapsed_s <= 0, CAST(month_to_date_usd AS Decimal(38, 12)),
            CAST(month_to_date_usd AS Decimal(38, 12)) * month_s / elapsed_s) AS Decimal(38, 12))
        as projected_month_end_usd,
    toFloat64(month_to_date_usd) / toFloat64(budget_usd) as budget_used_share,
    toFloat64(projected_month_end_usd) / toFloat64(budget_usd) as projected_budget_share,
    CAST(budget_usd - month_to_date_usd AS Decimal(38, 12)) as remaining_usd,
    multiIf(month_to_date_usd > budget_usd, 'over',
            projected_month_end_usd > budget_usd, 'projected_over', 'within') as status
from measured
