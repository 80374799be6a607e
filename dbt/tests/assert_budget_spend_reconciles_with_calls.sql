{{ config(tags=['full_history']) }}
-- Month-to-date spend of every org-wide budget equals the org's calls in that month up to as_of.
-- It sums every call: `yieldmeter transform` runs it, scheduled builds leave it out (a build's
-- value_metrics_daily is checked against the calls of its rebuilt days, and budget_status sums it).
with as_of as (
    select {{ as_of() }} as as_of_at
),

calls as (
    select org_id, toStartOfMonth(day) as month, sum(cost_usd) as cost_usd
    from {{ ref('fct_calls') }}
    where occurred_at <= (select as_of_at from as_of)
    group by org_id, month
)

select b.org_id, b.month, b.month_to_date_usd, c.cost_usd
from {{ ref('budget_status') }} as b
left join calls as c on b.org_id = c.org_id and b.month = c.month
where b.team = '*' and b.month_to_date_usd != c.cost_usd
settings join_use_nulls = 0
