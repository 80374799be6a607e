{{ config(tags=['full_history']) }}
-- What fct_calls (and so every mart) counts is what the pipeline recorded plus exactly the
-- differences the repricing audit lists: no call is repriced without an audit row, none twice.
with totals as (
    select
        (select sum(cost_usd) from {{ ref('fct_calls') }}) as marts_cost_usd,
        (select sum(list_cost_usd) from {{ ref('fct_calls') }}) as marts_list_cost_usd,
        (select countIf(pricing_status = 'repriced') from {{ ref('fct_calls') }}) as repriced_calls,
        (select sum(cost_usd) from {{ ref('stg_calls') }}) as stream_cost_usd,
        (select sum(list_cost_usd) from {{ ref('stg_calls') }}) as stream_list_cost_usd,
        (select sum(cost_difference_usd) from {{ ref('repricing_audit') }}) as repriced_cost_usd,
        (select sum(list_cost_difference_usd) from {{ ref('repricing_audit') }}) as repriced_list_cost_usd,
        (select count() from {{ ref('repricing_audit') }}) as audited_calls
)

select *
from totals
where marts_cost_usd != stream_cost_usd + repriced_cost_usd
    or marts_list_cost_usd != stream_list_cost_usd + repriced_list_cost_usd
    or repriced_calls != audited_calls
