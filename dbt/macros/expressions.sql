{# A plain, non-null Bool: comparisons on LowCardinality columns give LowCardinality(UInt8),
   which ClickHouse refuses to store, and comparisons with NULL give NULL, which is false here. #}
{% macro as_bool(expression) -%}
    CAST(ifNull(({{ expression }}), 0) AS Bool)
{%- endmacro %}

{# The wire form of a time (2026-11-02T09:00:00.000Z), as yieldmeter.contracts writes it. #}
{% macro wire_time(column) -%}
    concat(formatDateTime({{ column }}, '%Y-%m-%dT%H:%i:%S'), '.',
           leftPad(toString(toUnixTimestamp64Milli({{ column }}) % 1000), 3, '0'), 'Z')
{%- endmacro %}

{# The exact median (the mean of the two middle values for an even count). #}
{% macro median_exact(expression) -%}
    quantileExactInclusive(0.5)({{ expression }})
{%- endmacro %}
