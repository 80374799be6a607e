{{ config(order_by='(month, org_id, team)') }}

-- Month-to-date and projected month-end spend against each budget. Projection: month-to-date
-- spend scaled by the share of the month elapsed at as_of (a straight line); a finished month's
-- projection is its spend. Budgets apply from the month of the org's first spend to as_of's month.
with as_of as (
    select {{ as_of() }} as as_of_at
),

budgets as (
    -- the monthly spend budgets of an org or of one of its teams (`yieldmeter budgets set`); a
    -- budget narrowed to a user, app or key, or per day, is the controls job's alone
    -- (usage.controls). Months here are UTC months, whatever the budget's time zone.
    select CAST(org_id AS String) as org_id, if(team = '', '*', team) as team,
        CAST(limit_usd AS Decimal(38, 9)) as budget_usd
    from {{ ref('stg_budgets') }}
    where kind = 'spend' and period = 'month' and user_id = '' and app = '' and api_key = ''
),

-- spend per org, team and day: value_metrics_daily's sums (one definition of each), so a build
-- reads days, not calls
daily as (
    select org_id, team, day, sum(cost_usd) as cost_usd, sum(calls) as calls,
        sum(unpriced_calls) as unpriced_calls
    from {{ ref('value_metrics_daily') }}
    group by org_id, team, day
    having sum(calls) > 0
),

months as (
    -- a budget applies to every month of its org's spend up to as_of's month
    select distinct org_id, toStartOfMonth(day) as month
    from daily
    where month <= toStartOfMonth((select as_of_at from as_of))
),

chosen as (
    select b.org_id as org_id, b.team as team, m.month as month, b.budget_usd as budget_usd
    from budgets as b
    inner join months as m on b.org_id = m.org_id
),

-- the calls up to as_of: the days before its own whole, its own day's calls up to it
spend as (
    select org_id, team, toStartOfMonth(day) as month, sum(cost_usd) as cost_usd, sum(calls) as calls,
        sum(unpriced_calls) as unpriced_calls
    from (
        select org_id, team, day, cost_usd, calls, unpriced_calls
        from daily
        where day < toDate((select as_of_at from as_of))
        union all
        select CAST(org_id AS String), team, day, cost_usd, toUInt64(1), toUInt64(not is_priced)
        from {{ ref('fct_calls') }}
        where occurred_at >= toStartOfDay((select as_of_at from as_of))
            and occurred_at <= (select as_of_at from as_of)
    )
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
