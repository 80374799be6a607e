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
