{#
  dbt-clickhouse's delete+insert (1.10.3, macros/materializations/incremental/incremental.sql,
  clickhouse__incremental_delete_insert; a macro of the root project takes its place), with one
  change: the model's columns are checked here, on the table of new rows (system.columns), instead
  of by planning the model's SQL again. dbt-clickhouse plans it twice more for a model with an
  enforced contract: the materialization's on_schema_change check and the contract check each run
  SELECT * FROM (sql) LIMIT 0, whose planning evaluates the scalar subqueries and builds the sets
  of the IN subqueries (ClickHouse reads them for primary-key analysis): up to a quarter of a
  second each on 10M calls. Here the table of new rows takes the SQL's own columns (CREATE ...
  EMPTY AS, which only analyses it), and its columns must equal
    - the contract's names and data types, if enforced (dbt's contract error otherwise), and
    - the existing table's (on_schema_change 'fail': rebuild with --full-refresh; the only value
      this project uses, so any other is refused rather than half-honoured).
  incremental_validate_on_schema_change below makes the materialization skip its own check for the
  delete+insert models, which keep on_schema_change 'fail' in their config (dbt requires it of an
  incremental model with a contract). Not for distributed tables (the embedded warehouse and a
  single server have none).
#}
{% macro clickhouse__incremental_delete_insert(existing_relation, unique_key, incremental_predicates, is_distributed=False) %}
    {% if is_distributed %}
        {{ exceptions.raise_compiler_error("yieldmeter's delete+insert (macros/delete_insert.sql) does not handle distributed tables") }}
    {% endif %}
    {% if config.get('on_schema_change') != 'fail' %}
        {{ exceptions.raise_compiler_error("yieldmeter's delete+insert (macros/delete_insert.sql) supports on_schema_change 'fail' only, not "
           ~ config.get('on_schema_change') ~ " (model " ~ this.identifier ~ ")") }}
    {% endif %}
    {% set new_data_relation = existing_relation.incorporate(path={"identifier": existing_relation.identifier
       + '__dbt_new_data_' + invocation_id.replace('-', '_')}) %}
    {{ drop_relation_if_exists(new_data_relation) }}
    {% do clickhouse__create_empty_table(False, new_data_relation, sql, False) %}
    {% call statement('main') %}
        {{ clickhouse__insert_into(new_data_relation, sql, False) }}
    {% endcall %}

    {%- set built_columns = adapter.get_columns_in_relation(new_data_relation) -%}
    {% if config.get('contract').enforced %}
        {%- set contract_columns = model['columns'].values() | list -%}
        {%- set sql_columns = adapter.format_columns(built_columns) -%}
        {%- set contract, built = [], [] -%}
        {%- for column in contract_columns -%}{%- do contract.append(column['name'] ~ ' ' ~ column['data_type']) -%}{%- endfor -%}
        {%- for column in sql_columns -%}{%- do built.append(column['name'] ~ ' ' ~ column['data_type']) -%}{%- endfor -%}
        {% if contract | sort != built | sort %}
            {% do adapter.drop_relation(new_data_relation) %}
            {% do exceptions.raise_contract_error(contract_columns, sql_columns) %}
        {% endif %}
    {% endif %}

    {# on_schema_change 'fail': the same names and types, or the table is rebuilt with --full-refresh
       (data_type: the whole type; dtype leaves out Nullable and LowCardinality). `yieldmeter run`
       does that rebuild itself on this error: its first words are transform.COLUMNS_CHANGED. #}
    {%- set dest_columns = adapter.get_columns_in_relation(existing_relation) -%}
    {%- set existing, built = [], [] -%}
    {%- for column in dest_columns -%}{%- do existing.append(column.name ~ ' ' ~ column.data_type) -%}{%- endfor -%}
    {%- for column in built_columns -%}{%- do built.append(column.name ~ ' ' ~ column.data_type) -%}{%- endfor -%}
    {% if existing | sort != built | sort %}
        {% do adapter.drop_relation(new_data_relation) %}
        {{ exceptions.raise_compiler_error(
            "The columns of incremental model " ~ this.identifier ~ " changed (the table has "
            ~ (existing | reject('in', built) | list) ~ ", the model now gives " ~ (built | reject('in', existing) | list)
            ~ "): rebuild it with `yieldmeter transform --full-refresh`.") }}
    {% endif %}

    {# a model whose rows of the rebuilt keys all lie on the rebuilt days (meta rebuilt_day: fct_calls,
       whose rows are int_calls_sessionized's; a call keeps its day, since the versions of a call that
       FINAL collapses share the calls table's sorting key, hour included, so even a call re-delivered
       under another key leaves a row on a day its new key rebuilds) deletes on those days alone: its
       sorting key finds them, where the key alone is looked for in every row #}
    {%- set day = config.get('meta', {}).get('rebuilt_day') -%}
    {% call statement('delete_existing_data') %}
        delete from {{ existing_relation }} where ({{ unique_key }}) in (select {{ unique_key }} from {{ new_data_relation }})
        {%- if day %}
            and {{ in_days(day, rebuilt_days()) }}
        {%- endif %}
        {%- for predicate in incremental_predicates %}
            and {{ predicate }}
        {%- endfor %}
        {{ adapter.get_model_query_settings(model) }}
    {% endcall %}

    {%- set dest_cols_csv = dest_columns | map(attribute='quoted') | join(', ') -%}
    {% call statement('insert_new_data') %}
        insert into {{ existing_relation }} select {{ dest_cols_csv }} from {{ new_data_relation }} {{ adapter.get_model_query_settings(model) }}
    {% endcall %}
    {% do adapter.drop_relation(new_data_relation) %}
{% endmacro %}

{# dbt's own macro (dbt-adapters, on_schema_change.sql), except for the delete+insert models,
   whose columns the macro above checks: the materialization then skips its check. #}
{% macro incremental_validate_on_schema_change(on_schema_change, default='ignore') %}
    {% if config.get('materialized') == 'incremental' and config.get('incremental_strategy') in ('delete+insert', 'delete_insert') %}
        {{ return('ignore') }}
    {% endif %}
    {{ return(dbt.incremental_validate_on_schema_change(on_schema_change, default)) }}
{% endmacro %}
