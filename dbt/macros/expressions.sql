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

{# A time to ASOF JOIN on that breaks ties: an ASOF join picks any of the rows that tie on time, so
   a build would depend on the order it read them in (and an incremental build could differ from a
   full one). The time's millisecond, then the row's id hashed (cityHash64): of rows at the same
   moment, the one whose id hashes highest wins. Without an id (the side looking up) the key sorts
   after every row of its millisecond, so `>=` still means "at or before". #}
{% macro asof_time(column, id=none) -%}
    (bitShiftLeft(toUInt128(toUnixTimestamp64Milli({{ column }})), 64) + {{ 'cityHash64(' ~ id ~ ')' if id else '18446744073709551615' }})
{%- endmacro %}

{# A text as a ClickHouse string literal (backslashes and quotes escaped): e.g. a test's own SQL
   expressions, returned as the names of what failed. #}
{% macro sql_string(text) -%}
    '{{ text | replace("\\", "\\\\") | replace("'", "\\'") }}'
{%- endmacro %}
