{{ config(order_by='(org_id, occurred_at, event_id)') }}

-- The calls the warehouse repriced (int_calls_priced): what the stream recorded, what they cost
-- now, what changed, why, and when the record that changed it was published.
with repriced as (
    select *
    from {{ ref('int_calls_sessionized') }}
    where pricing_status = 'repriced'
),

prices as (
    select price_id as p_price_id, published_at as price_published_at
    from {{ ref('stg_prices') }}
),

discounts as (
    select discount_id as d_discount_id, published_at as discount_published_at
    from {{ ref('stg_org_discounts') }}
),

explained as (
    select
        c.*,
        {{ as_bool("c.recorded_pricing_status != 'priced'") }} as is_newly_priced,
        {{ as_bool("not is_newly_priced and c.price_id != c.recorded_price_id") }} as is_price_replaced,
        -- same price, other rates: the record was republished with a correction
        {{ as_bool("not is_newly_priced and not is_price_replaced and (c.is_context_tier != c.recorded_is_context_tier"
                   ~ " or c.list_cost_usd != c.recorded_list_cost_usd"
                   ~ " or c.cost_input_usd != c.recorded_cost_input_usd or c.cost_cache_read_usd != c.recorded_cost_cache_read_usd"
                   ~ " or c.cost_cache_write_usd != c.recorded_cost_cache_write_usd or c.cost_output_usd != c.recorded_cost_output_usd"
                   ~ " or c.cost_reasoning_usd != c.recorded_cost_reasoning_usd)") }} as is_price_corrected,
        -- another discount charged (a 0 % discount and none charge the same)
        {{ as_bool("c.discount_pct != c.recorded_discount_pct or if(c.discount_pct = 0, '', c.discount_id)"
                   ~ " != if(c.recorded_discount_pct = 0, '', c.recorded_discount_id)") }} as is_discount_changed,
        p.price_published_at as price_published_at,
        d.discount_published_at as discount_published_at
    from repriced as c
    left join prices as p on c.price_id = p.p_price_id
    left join discounts as d on c.discount_id = d.d_discount_id
)

select
    event_id,
    occurred_at,
    org_id,
    team,
    app,
    provider,
    model,
    service_tier,
    total_tokens,
    arrayFilter(x -> x != '', [
        if(is_newly_priced, 'newly_priced', ''),
        if(is_price_replaced, 'price_replaced', ''),
        if(is_price_corrected, 'price_corrected', ''),
        if(is_discount_changed and discount_id != recorded_discount_id, 'discount_backdated', ''),
        if(is_discount_changed and discount_id = recorded_discount_id, 'discount_corrected', '')
    ]) as reasons,
    reasons[1] as reason,
    -- when: the publication of the record(s) that changed the cost
    CAST(greatest(
        if(is_newly_priced or is_price_replaced or is_price_corrected, price_published_at, toDateTime64(0, 3, 'UTC')),
        if(is_discount_changed, discount_published_at, toDateTime64(0, 3, 'UTC'))) AS DateTime64(3, 'UTC'))
        as changed_at,
    recorded_pricing_status,
    recorded_price_id,
    price_id as current_price_id,
    price_published_at,
    recorded_discount_id,
    discount_id as current_discount_id,
    recorded_discount_pct,
    discount_pct as current_discount_pct,
    discount_published_at,
    recorded_list_cost_usd,
    list_cost_usd as current_list_cost_usd,
    CAST(list_cost_usd - recorded_list_cost_usd AS Decimal(38, 15)) as list_cost_difference_usd,
    recorded_cost_usd,
    cost_usd as current_cost_usd,
    CAST(cost_usd - recorded_cost_usd AS Decimal(38, 21)) as cost_difference_usd
from explained
