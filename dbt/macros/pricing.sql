{# Milliseconds since midnight of a daily time 'HH:MM:SS' (PriceRecord.time_of_day_start/end);
   0 for '' (no window). #}
{% macro ms_of_day(column) -%}
    toUInt32(toUInt32OrZero(substring({{ column }}, 1, 2)) * 3600000
             + toUInt32OrZero(substring({{ column }}, 4, 2)) * 60000
             + toUInt32OrZero(substring({{ column }}, 7, 2)) * 1000)
{%- endmacro %}
