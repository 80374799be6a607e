{{ config(order_by='(org_id, occurred_at, event_id)') }}

-- Calls whose recorded price differs from what the catalog says now: a price corrected for a
-- past period, a new price version inserted back in time, or a price that now exists for a call
-- that was unpriced. Each call is repriced with the price in force at its time in today's
-- catalog (its service tier's, else the model's default tier, as the pipeline does), with the
-- same rules (context tier, rate fallbacks) and the call's own recorded discount. Nothing is
-- rewritten: fct_calls keeps what was charged; this lists each difference.
{% set rates = ['input', 'output', 'cache_read', 'cache_write', 'reasoning'] %}

with calls as (
    select
        event_id, occurred_at, org_id, team, app, provider, model, service_tier,
        input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
        pricing_status, price_id, discount_pct, list_cost_usd, cost_usd
    from {{ ref('fct_calls') }}
),

tier_prices as (
    select {{ price_columns('t') }} from {{ ref('stg_prices') }}
),

default_prices as (
    select {{ price_columns('d') }} from {{ ref('stg_prices') }} where service_tier = 'default'
),

with_tier as (
    select c.*, p.*
    from calls as c
    asof left join tier_prices as p
        on c.provider = p.t_provider and c.model = p.t_model and c.service_tier = p.t_service_tier
        and c.occurred_at >= p.t_effective_from
),

with_both as (
    select c.*, p.*
    from with_tier as c
    asof left join default_prices as p
        on c.provider = p.d_provider and c.model = p.d_model and c.occurred_at >= p.d_effective_from
),

current_rates as (
    select
        *,
        multiIf(t_is_match, t_price_id, d_is_match, d_price_id, '') as current_price_id,
        {% for r in rates %}
        if(t_is_match, t_{{ r }}, d_{{ r }}) as p_{{ r }},
        if(t_is_match, t_{{ r }}_above, d_{{ r }}_above) as p_{{ r }}_above,
        {% endfor %}
        if(t_is_match, t_threshold, d_threshold) as p_threshold,
        ifNull(input_tokens > p_threshold, false) as is_context_tier
    from with_both
),

-- PriceRecord.rates_for: above the threshold every token pays the *_above rate; unset rates
-- fall back (cache -> input, reasoning -> output; above: own above, else base, else parent's above)
rated as (
    select
        *,
        if(is_context_tier, p_input_above, p_input) as r_input,
        if(is_context_tier, p_output_above, p_output) as r_output,
        if(is_context_tier, coalesce(p_cache_read_above, p_cache_read, p_input_above),
           coalesce(p_cache_read, p_input)) as r_cache_read,
        if(is_context_tier, coalesce(p_cache_write_above, p_cache_write, p_input_above),
           coalesce(p_cache_write, p_input)) as r_cache_write,
        if(is_context_tier, coalesce(p_reasoning_above, p_reasoning, p_output_above),
           coalesce(p_reasoning, p_output)) as r_reasoning
    from current_rates
),

-- exact: tokens x rate (12 decimals) x 0.000001 has 18 decimals
repriced as (
    select
        *,
        {% set per_token = "toDecimal64('0.000001', 6)" %}
        ifNull(toDecimal128(input_tokens - cache_read_tokens - cache_write_tokens, 0) * r_input * {{ per_token }}, 0)
        + ifNull(toDecimal128(cache_read_tokens, 0) * r_cache_read * {{ per_token }}, 0)
        + ifNull(toDecimal128(cache_write_tokens, 0) * r_cache_write * {{ per_token }}, 0)
        + ifNull(toDecimal128(output_tokens - reasoning_tokens, 0) * r_output * {{ per_token }}, 0)
        + ifNull(toDecimal128(reasoning_tokens, 0) * r_reasoning * {{ per_token }}, 0) as current_list_cost_usd
    from rated
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
    input_tokens + output_tokens as total_tokens,
    pricing_status,
    price_id as recorded_price_id,
    current_price_id,
    multiIf(pricing_status != 'priced', 'newly_priced',
            current_price_id = '', 'price_withdrawn',
            current_price_id = price_id, 'price_corrected',
            'price_replaced') as reason,
    discount_pct,
    list_cost_usd as recorded_list_cost_usd,
    CAST(current_list_cost_usd AS Decimal(38, 18)) as current_list_cost_usd,
    CAST(current_list_cost_usd - list_cost_usd AS Decimal(38, 18)) as list_cost_difference_usd,
    cost_usd as recorded_cost_usd,
    -- the recorded discount on the current list cost (the pipeline's factor: 6 decimals)
    CAST(current_list_cost_usd * toDecimal64((100 - discount_pct) / 100, 6) AS Decimal(38, 24)) as current_cost_usd,
    CAST(current_cost_usd - cost_usd AS Decimal(38, 24)) as cost_difference_usd
from repriced
where (pricing_status = 'priced') != (current_price_id != '')
    or (pricing_status = 'priced' and (current_price_id != price_id or current_list_cost_usd != list_cost_usd))
