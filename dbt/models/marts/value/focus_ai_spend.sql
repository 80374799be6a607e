{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='toDate(ChargePeriodStart)',
          order_by='(ChargePeriodStart, SubAccountId, ProviderName, SkuId)') }}
-- Incremental by day (macros/incremental.sql): the charge hours of the days this build rebuilt
-- (rebuilt_days) are summed again from fct_calls.
-- depends_on: {{ ref('int_rebuild_scope') }}

-- AI spend in the shape of the FinOps Open Cost and Usage Specification (FOCUS 1.2): one row per
-- charge hour, org, team, app, provider, model, service tier, price and token type. Costs per
-- token type: list = tokens x catalog rate; effective = list x the org's discount factor, exactly
-- as the pipeline priced each call, so EffectiveCost sums to cost_usd and ListCost to
-- list_cost_usd. Columns not in FOCUS carry the x_ prefix the specification reserves.
{% set types = [
    ('input', 'input_tokens - cache_read_tokens - cache_write_tokens', 'cost_input_usd'),
    ('cache_read', 'cache_read_tokens', 'cost_cache_read_usd'),
    ('cache_write', 'cache_write_tokens', 'cost_cache_write_usd'),
    ('output', 'output_tokens - reasoning_tokens', 'cost_output_usd'),
    ('reasoning', 'reasoning_tokens', 'cost_reasoning_usd'),
] %}

with calls as (
    select
        *,
        -- the pipeline's discount factor: (100 - pct) / 100 with 6 decimals
        toDecimal64((100 - discount_pct) / 100, 6) as discount_factor
    from {{ ref('fct_calls') }}
    where {{ in_days('day', rebuilt_days()) }}
),

hourly as (
    select
        toStartOfHour(occurred_at) as hour,
        org_id, team, app, provider, model, service_tier, price_id, pricing_status, is_context_tier,
        count() as calls,
        {% for name, tokens, cost in types %}
        toUInt64(sum({{ tokens }})) as {{ name }}_tokens_sum,
        CAST(sum({{ cost }}) AS Decimal(38, 15)) as {{ name }}_list_usd,
        -- per call: the undiscounted call's own decimal, a discounted one's component x factor
        CAST(sum(if(discount_pct = 0, toDecimal128({{ cost }}, 21), {{ cost }} * discount_factor)) AS Decimal(38, 21))
            as {{ name }}_effective_usd{{ ',' if not loop.last }}
        {% endfor %}
    from calls
    group by hour, org_id, team, app, provider, model, service_tier, price_id, pricing_status, is_context_tier
),

by_token_type as (
    select
        hourly.* except ({% for name, _, _ in types %}{{ name }}_tokens_sum, {{ name }}_list_usd, {{ name }}_effective_usd{{ ', ' if not loop.last }}{% endfor %}),
        line.1 as token_type,
        line.2 as tokens,
        line.3 as list_cost_usd,
        line.4 as effective_cost_usd
    from hourly
    array join [
        {% for name, _, _ in types %}
        tuple('{{ name }}', {{ name }}_tokens_sum, {{ name }}_list_usd, {{ name }}_effective_usd){{ ',' if not loop.last }}
        {% endfor %}
    ] as line
    where tokens > 0 or list_cost_usd != 0
)

select
    effective_cost_usd as BilledCost,
    effective_cost_usd as EffectiveCost,
    list_cost_usd as ListCost,
    effective_cost_usd as ContractedCost,
    'USD' as BillingCurrency,
    hour as ChargePeriodStart,
    hour + interval 1 hour as ChargePeriodEnd,
    toStartOfMonth(hour) as BillingPeriodStart,
    addMonths(toStartOfMonth(hour), 1) as BillingPeriodEnd,
    'Usage' as ChargeCategory,
    'Usage-Based' as ChargeFrequency,
    concat(model, ' ', replaceAll(token_type, '_', '-'), ' tokens (', service_tier, ' tier)') as ChargeDescription,
    'AI and Machine Learning' as ServiceCategory,
    'Generative AI' as ServiceSubcategory,
    concat(provider, ' ', model) as ServiceName,
    provider as ProviderName,
    provider as PublisherName,
    provider as InvoiceIssuerName,
    org_id as SubAccountId,
    org_id as SubAccountName,
    concat(provider, '/', model, '/', service_tier, '/', token_type, if(is_context_tier, '/above-context-threshold', ''))
        as SkuId,
    nullIf(price_id, '') as SkuPriceId,
    toJSONString(map(
        'Model', model,
        'TokenType', token_type,
        'ServiceTier', service_tier,
        'ContextTier', if(is_context_tier, 'above_threshold', 'base'))) as SkuPriceDetails,
    toDecimal128(tokens, 0) as ConsumedQuantity,
    'Tokens' as ConsumedUnit,
    toDecimal128(tokens, 6) / 1000000 as PricingQuantity,
    '1M Tokens' as PricingUnit,
    toJSONString(map('org', org_id, 'team', team, 'app', app)) as Tags,
    token_type as x_TokenType,
    team as x_Team,
    app as x_App,
    pricing_status as x_PricingStatus,
    calls as x_Calls
from by_token_type
