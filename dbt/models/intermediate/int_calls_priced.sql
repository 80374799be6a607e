-- Every call priced again by docs/pricing.md's rules, against the catalog as it stands now (the
-- latest publication of each price and org discount), as of the call's occurred_at. Where the
-- result differs from what the stream wrote (another price or discount, other rates, a price for
-- an unpriced call), the call takes the warehouse's cost and pricing_status 'repriced'; otherwise
-- the stream's values stand. The stream's values stay in the recorded_* columns (for the
-- repricing audit and the session totals). Working columns are named w_* and dropped at the end.
{% set rates = ['input', 'output', 'cache_read', 'cache_write', 'reasoning'] %}
{% set components = [
    ('input', 'input_tokens - cache_read_tokens - cache_write_tokens'),
    ('cache_read', 'cache_read_tokens'),
    ('cache_write', 'cache_write_tokens'),
    ('output', 'output_tokens - reasoning_tokens'),
    ('reasoning', 'reasoning_tokens'),
] %}
{% set pricing = ['pricing_status', 'price_id', 'is_context_tier', 'discount_id', 'discount_pct',
    'cost_input_usd', 'cost_cache_read_usd', 'cost_cache_write_usd', 'cost_output_usd', 'cost_reasoning_usd',
    'list_cost_usd', 'cost_usd'] %}

with calls as (
    select
        * except ({{ pricing | join(', ') }}),
        {% for column in pricing %}
        {{ column }} as recorded_{{ column }},
        {% endfor %}
        -- ms since UTC midnight: what a price's daily window is compared with
        toUInt32(toUnixTimestamp64Milli(occurred_at) % 86400000) as w_time_of_day_ms
    from {{ ref('stg_calls') }}
),

prices as (
    select * from {{ ref('stg_prices') }}
),

discounts as (
    select * from {{ ref('stg_org_discounts') }}
),

-- One row per price history (provider, model, service_tier): its versions, all-day and windowed,
-- sorted by (effective_from, has a window). The price in force at t is the last version that is
-- effective at t and whose window holds t's time of day: the latest effective_from wins, and a
-- windowed version wins a tie. (An ASOF JOIN finds the latest version of one key, not the latest
-- of those whose window holds t; a history has a handful of versions, so arrays are cheap.)
histories as (
    select
        provider as w_h_provider,
        model as w_h_model,
        service_tier as w_h_service_tier,
        arraySort(v -> (v.1, v.2), groupArray(tuple(
            effective_from,
            time_of_day_start != '',
            {{ ms_of_day('time_of_day_start') }},
            {{ ms_of_day('time_of_day_end') }},
            price_id))) as w_h_versions
    from prices
    group by provider, model, service_tier
),

{% set in_force -%}
    v -> v.1 <= occurred_at and (not v.2 or if(v.3 < v.4, w_time_of_day_ms >= v.3 and w_time_of_day_ms < v.4,
                                                w_time_of_day_ms >= v.3 or w_time_of_day_ms < v.4))
{%- endset %}

-- the call's tier, else the model's default tier (as genai-prices does for a tier it lacks)
located as (
    select
        c.*,
        arrayLastIndex({{ in_force }}, t.w_h_versions) as w_tier_version,
        if(w_tier_version = 0, arrayLastIndex({{ in_force }}, d.w_h_versions), 0) as w_default_version,
        multiIf(w_tier_version > 0, t.w_h_versions[w_tier_version].5,
                w_default_version > 0, d.w_h_versions[w_default_version].5, '') as w_price_id
    from calls as c
    left join histories as t
        on c.provider = t.w_h_provider and c.model = t.w_h_model and c.service_tier = t.w_h_service_tier
    left join (select * from histories where w_h_service_tier = 'default') as d
        on c.provider = d.w_h_provider and c.model = d.w_h_model
),

-- OrgDiscount: the org's discount in force for the call's provider, else its all-provider one
with_provider_discount as (
    select c.*, g.*
    from located as c
    asof left join (
        select org_id as w_g_org_id, provider as w_g_provider, effective_from as w_g_effective_from,
            discount_id as w_g_discount_id, discount_pct as w_g_discount_pct, true as w_g_is_match
        from discounts where provider != '*'
    ) as g
        on c.org_id = g.w_g_org_id and c.provider = g.w_g_provider and c.occurred_at >= g.w_g_effective_from
),

with_discounts as (
    select c.*, a.*
    from with_provider_discount as c
    asof left join (
        select org_id as w_a_org_id, effective_from as w_a_effective_from,
            discount_id as w_a_discount_id, discount_pct as w_a_discount_pct, true as w_a_is_match
        from discounts where provider = '*'
    ) as a
        on c.org_id = a.w_a_org_id and c.occurred_at >= a.w_a_effective_from
),

-- PriceRecord.rates_for: above the threshold every token pays the *_above rate; unset rates fall
-- back (cache -> input, reasoning -> output; above: own above, else base, else parent's above)
rated as (
    select
        c.*,
        p.*,
        {{ as_bool("c.input_tokens > p.w_p_threshold") }} as w_is_context_tier,
        if(w_is_context_tier, w_p_input_above, w_p_input) as w_r_input,
        if(w_is_context_tier, w_p_output_above, w_p_output) as w_r_output,
        if(w_is_context_tier, coalesce(w_p_cache_read_above, w_p_cache_read, w_p_input_above),
           coalesce(w_p_cache_read, w_p_input)) as w_r_cache_read,
        if(w_is_context_tier, coalesce(w_p_cache_write_above, w_p_cache_write, w_p_input_above),
           coalesce(w_p_cache_write, w_p_input)) as w_r_cache_write,
        if(w_is_context_tier, coalesce(w_p_reasoning_above, w_p_reasoning, w_p_output_above),
           coalesce(w_p_reasoning, w_p_output)) as w_r_reasoning,
        multiIf(w_g_is_match, w_g_discount_id, w_a_is_match, w_a_discount_id, '') as w_discount_id,
        multiIf(w_g_is_match, w_g_discount_pct, w_a_is_match, w_a_discount_pct, toDecimal32(0, 6)) as w_discount_pct
    from with_discounts as c
    left join (
        select
            price_id as w_p_price_id,
            tier_threshold_input_tokens as w_p_threshold,
            {% for r in rates %}
            {{ r }}_per_mtok as w_p_{{ r }}, {{ r }}_above_per_mtok as w_p_{{ r }}_above{{ ',' if not loop.last }}
            {% endfor %}
        from prices
    ) as p on c.w_price_id = p.w_p_price_id
),

-- Exact money, as PriceRecord.cost_usd and OrgDiscount.apply: tokens x rate (9 decimals) x
-- 0.000001 has 15 decimals; list x (100 - pct) / 100 (pct: 4 decimals, so the factor has 6) has 21.
costed as (
    select
        *,
        {% for name, tokens in components %}
        CAST(ifNull(toDecimal128({{ tokens }}, 0) * w_r_{{ name }} * toDecimal64('0.000001', 6), 0)
             AS Decimal(38, 15)) as w_cost_{{ name }}_usd,
        {% endfor %}
        CAST({% for name, _ in components %}w_cost_{{ name }}_usd{{ ' + ' if not loop.last }}{% endfor %}
             AS Decimal(38, 15)) as w_list_cost_usd,
        CAST(if(w_discount_pct = 0, CAST(w_list_cost_usd AS Decimal(38, 21)),
                w_list_cost_usd * toDecimal64((100 - w_discount_pct) / 100, 6)) AS Decimal(38, 21)) as w_cost_usd
    from rated
),

compared as (
    select
        *,
        -- Only where the warehouse finds a price and holds the records the stream used: else it
        -- knows less than the stream did (a record deleted, or not ingested yet), and the
        -- stream's cost stands.
        w_price_id != ''
            and (recorded_price_id = '' or recorded_price_id in (select price_id from prices))
            and (recorded_discount_id = '' or recorded_discount_id in (select discount_id from discounts))
            and (recorded_pricing_status != 'priced'
                 or w_price_id != recorded_price_id
                 or w_is_context_tier != recorded_is_context_tier
                 or w_discount_pct != recorded_discount_pct
                 -- a 0 % discount and none charge the same
                 or if(w_discount_pct = 0, '', w_discount_id) != if(recorded_discount_pct = 0, '', recorded_discount_id)
                 {% for name, _ in components %}
                 or w_cost_{{ name }}_usd != recorded_cost_{{ name }}_usd
                 {% endfor %}
                 or w_list_cost_usd != recorded_list_cost_usd
                 or w_cost_usd != recorded_cost_usd) as w_is_repriced
    from costed
)

select
    * except ('^w_'),
    -- priced (by the stream) / repriced (by the warehouse) / unpriced (no price: costs 0 here,
    -- counted as unpriced everywhere; the stream's old 'unpriced_late' is unpriced too)
    multiIf(w_is_repriced, 'repriced', recorded_pricing_status = 'priced', 'priced', 'unpriced') as pricing_status,
    {% for column in pricing if column != 'pricing_status' %}
    if(w_is_repriced, w_{{ column }}, recorded_{{ column }}) as {{ column }}{{ ',' if not loop.last }}
    {% endfor %}
from compared
