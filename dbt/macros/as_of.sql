{# The moment budgets are measured at: var('as_of') (ISO time, UTC), else the newest call. #}
{% macro as_of() -%}
    {%- if var('as_of') -%}
        parseDateTime64BestEffort('{{ var("as_of") }}', 3, 'UTC')
    {%- else -%}
        (select max(occurred_at) from {{ ref('fct_calls') }})
    {%- endif -%}
{%- endmacro %}
