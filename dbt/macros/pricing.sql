{# A price's columns renamed with a prefix, for ASOF joins that must not clash with the call's
   own columns (repricing_audit joins two price lookups onto each call). #}
{% macro price_columns(prefix) -%}
    price_id as {{ prefix }}_price_id, provider as {{ prefix }}_provider, model as {{ prefix }}_model,
    service_tier as {{ prefix }}_service_tier, effective_from as {{ prefix }}_effective_from,
    tier_threshold_input_tokens as {{ prefix }}_threshold,
    {%- for r in ['input', 'output', 'cache_read', 'cache_write', 'reasoning'] %}
    {{ r }}_per_mtok as {{ prefix }}_{{ r }}, {{ r }}_above_per_mtok as {{ prefix }}_{{ r }}_above,
    {%- endfor %}
    true as {{ prefix }}_is_match
{%- endmacro %}
