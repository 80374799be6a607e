{# Generic tests of this project (no packages: `dbt deps` would need the network). #}

{# No two rows share the values of `columns`. #}
{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count() as rows
from {{ model }}
group by {{ columns | join(', ') }}
having rows > 1
{% endtest %}

{# Each sum over the model equals its sum over compare_model, exactly (decimals are exact, so money
   must reconcile to the last digit). `sums` maps an expression over the model to the expression
   over compare_model it must sum to, all summed in one pass of each model (one test, not one per
   sum: a refresh's dbt work and reads grow with its tests). Returns a row per sum that differs:
   the model's expression and both totals. `by` (the model's key, compare_by the compare model's;
   default the same): in a scheduled build, both sums are over the keys this build rebuilt
   (rebuilt_keys, by the key's name: session_key, outcome_id, week or else a day), e.g. the
   rebuilt days of a mart by day; the compare model's rows of those keys (but for weeks: a rebuilt
   week has days that were not) lie on its rebuilt days (rebuilt_rows with days_only), which its
   sorting key finds without reading every row. #}
{% test reconciles_with(model, compare_model, sums, compare_where=none, by=none, compare_by=none) %}
{%- set keys = rebuilt_keys(by, compare_model) if by else none -%}
{%- set left = [by ~ ' in (' ~ keys ~ ')' if keys else none] | select | list -%}
{%- set right = [compare_where, (compare_by or by) ~ ' in (' ~ keys ~ ')' if keys else none,
                  rebuilt_rows(compare_model, days_only=true) if keys and by != 'week' else none] | select | list -%}
with left_side as (
    select {% for e in sums %}sum({{ e }}) as total_{{ loop.index }}{{ ', ' if not loop.last }}{% endfor %}
    from {{ model }} {% if left %}where {{ left | join(' and ') }}{% endif %}
),
right_side as (
    select {% for e in sums.values() %}sum({{ e }}) as total_{{ loop.index }}{{ ', ' if not loop.last }}{% endfor %}
    from {{ compare_model }} {% if right %}where {{ right | join(' and ') }}{% endif %}
),
both_sides as (
    select
        [{% for e in sums %}{{ sql_string(e) }}{{ ', ' if not loop.last }}{% endfor %}] as sums_of,
        [{% for e in sums %}toString(l.total_{{ loop.index }}){{ ', ' if not loop.last }}{% endfor %}] as model_totals,
        [{% for e in sums %}toString(r.total_{{ loop.index }}){{ ', ' if not loop.last }}{% endfor %}] as compare_totals,
        [{% for e in sums %}l.total_{{ loop.index }} != r.total_{{ loop.index }}{{ ', ' if not loop.last }}{% endfor %}] as differences
    from left_side as l cross join right_side as r
)
select sum_of, model_total, compare_total
from both_sides
array join sums_of as sum_of, model_totals as model_total, compare_totals as compare_total, differences as differs
where differs
{% endtest %}

{# Every row satisfies each rule, a boolean SQL expression over one row: a model's row rules (a
   column not null, in a list of values, in a range, columns agreeing with each other) checked in one
   pass, as one test: each test is a node of dbt's work and a read of the rows, in every refresh
   (`yieldmeter run`'s builds). A rule that gives NULL passes, as in dbt's accepted_values and
   expression_is_true. Returns a row per rule that fails: the rule and how many rows break it. #}
{% test row_rules(model, rules) %}
select rule, failing_rows
from (
    select
        [{% for r in rules %}{{ sql_string(r) }}{{ ', ' if not loop.last }}{% endfor %}] as rules_checked,
        [{% for r in rules %}countIf(not ({{ r }})){{ ', ' if not loop.last }}{% endfor %}] as failing
    from {{ model }}
)
array join rules_checked as rule, failing as failing_rows
where failing_rows > 0
{% endtest %}

{# dbt's relationships test (every value of the column is a value of `field` in `to`), in place
   of dbt-clickhouse 1.10.3's: that one LEFT JOINs the parent, so ClickHouse builds a hash table
   of every parent row (10M event ids for the few rows of repricing_audit: 1-2 s). Here NOT IN
   builds a set of the parent's values that the child holds. Nulls in the column pass, as in
   dbt's. #}
{% macro clickhouse__test_relationships(model, column_name, to, field) %}
select {{ column_name }} as from_field
from {{ model }}
where {{ column_name }} is not null
    and {{ column_name }} not in (
        select {{ field }} from {{ to }}
        where {{ field }} is not null and {{ field }} in (select {{ column_name }} from {{ model }}))
{% endmacro %}

{# dbt's get_where_subquery (what a generic test reads for its model: the rows of its `where`),
   and in a scheduled build only the rows this build rebuilt of a model built by delete+insert
   (rebuilt_rows, macros/incremental.sql): the others passed the build that wrote them and did not
   change since, so a refresh's tests cost what it rebuilt. Tests across rows read more:
   - unique, unique_combination: every row sharing a tested value with a rebuilt row (a duplicate
     of a rebuilt row anywhere in the table fails); for a model scoped by day (fct_calls), the
     rebuilt days' rows: every version of a call has the call's sorting key, so its hour (an event
     id stored under two hours is two rows of stg_calls, whose full-history unique test fails);
   - relationships: the rebuilt rows' values must be in the whole parent (a parent row this build
     deleted belonged to a key it rebuilt, and the rows referring to it were rebuilt with it: the
     calls of the key, the outcomes int_rebuild_scope lists for a session that may lose them);
   - reconciles_with: scoped by itself (its `by`), so that both sides sum the same keys.
   `yieldmeter transform` tests every row. #}
{% macro clickhouse__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- set test = model.test_metadata if model.test_metadata else none -%}
    {%- set rebuilt = rebuilt_rows(relation) if test and test.name != 'reconciles_with' else none -%}
    {%- if rebuilt and test.name in ('unique', 'unique_combination') and not rebuilt_rows(relation, days_only=true) -%}
        {%- set columns = (test.kwargs.columns or [test.kwargs.column_name]) | join(', ') -%}
        {%- set rebuilt = '(' ~ columns ~ ') in (select ' ~ columns ~ ' from ' ~ relation ~ ' where ' ~ rebuilt ~ ')' -%}
    {%- endif -%}
    {%- set conditions = [where, rebuilt] | select | list -%}
    {%- if conditions -%}
        {{ return('(select * from ' ~ relation ~ ' where ' ~ conditions | join(' and ') ~ ') dbt_subquery') }}
    {%- else -%}
        {{ return(relation) }}
    {%- endif -%}
{%- endmacro %}
