{# Generic tests of this project (no packages: `dbt deps` would need the network). #}

{# No two rows share the values of `columns`. #}
{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count() as rows
from {{ model }}
group by {{ columns | join(', ') }}
having rows > 1
{% endtest %}

{# sum(expression) over the model equals sum(compare_expression) over compare_model, exactly
   (decimals are exact, so money must reconcile to the last digit). Returns the two sums when
   they differ. #}
{% test reconciles_with(model, expression, compare_model, compare_expression=none, where=none, compare_where=none) %}
with left_side as (
    select sum({{ expression }}) as total from {{ model }} {% if where %}where {{ where }}{% endif %}
),
right_side as (
    select sum({{ compare_expression or expression }}) as total
    from {{ compare_model }} {% if compare_where %}where {{ compare_where }}{% endif %}
)
select l.total as model_total, r.total as compare_total
from left_side as l cross join right_side as r
where l.total != r.total
{% endtest %}

{# Every value lies in [min_value, max_value] (nulls pass; not_null is its own test). #}
{% test between(model, column_name, min_value=none, max_value=none) %}
select {{ column_name }} as value
from {{ model }}
where {{ column_name }} is not null
  and ({% if min_value is not none %}{{ column_name }} < {{ min_value }}{% else %}false{% endif %}
       or {% if max_value is not none %}{{ column_name }} > {{ max_value }}{% else %}false{% endif %})
{% endtest %}

{# Every value matches the regular expression (re2 syntax, as ClickHouse's match()). #}
{% test matches_pattern(model, column_name, pattern) %}
select {{ column_name }} as value
from {{ model }}
where not match(toString({{ column_name }}), '{{ pattern }}')
{% endtest %}

{# Every row satisfies the boolean SQL expression. #}
{% test expression_is_true(model, expression, where=none, column_name=none) %}
select *
from {{ model }}
where not ({{ expression }}) {% if where %}and ({{ where }}){% endif %}
{% endtest %}

{# dbt's relationships test (every value of the column is a value of `field` in `to`), in place
   of dbt-clickhouse 1.10.3's: that one LEFT JOINs the parent, so ClickHouse builds a hash table
   of every parent row (10M event ids for the few rows of repricing_audit: 1-2 s). Here NOT IN
   builds a set of the parent's values, and of only those the child holds when the child is the
   much smaller table (a count of each first). Nulls in the column pass, as in
   dbt's. #}
{% macro clickhouse__test_relationships(model, column_name, to, field) %}
{%- set small_child = execute and run_query("select (select count() from " ~ model ~ ") * 10 < (select count() from " ~ to ~ ")").rows[0][0] -%}
select {{ column_name }} as from_field
from {{ model }}
where {{ column_name }} is not null
    and {{ column_name }} not in (
        select {{ field }} from {{ to }}
        where {{ field }} is not null
        {%- if small_child %} and {{ field }} in (select {{ column_name }} from {{ model }}){% endif %})
{% endmacro %}
