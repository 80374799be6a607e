{#
  Incremental builds (dbt/README.md, "Incremental builds"). A model built incrementally rebuilds
  only the rows of its unit of rebuild that int_rebuild_scope lists for this build: session keys
  (a call's and a session's every input lies in its session key's fragments, calls and prices),
  outcome ids, and days. Its incremental_strategy deletes the rows of those keys and inserts them
  rebuilt (delete+insert), so a refresh costs what changed and lands every row exactly once.
  On a full build (no table yet, --full-refresh, or no ledger: no build has finished since the
  ledger was created) the filters are `true`: every key is rebuilt.
#}

{# The SQL condition "column holds a key of `kind` this build rebuilds" (true on a full build). #}
{% macro in_rebuild_scope(column, kind='session_key') -%}
    {%- if is_incremental() and incremental_ledger() is not none -%}
        {{ column }} in (select key from {{ ref('int_rebuild_scope') }} where kind = '{{ kind }}')
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{# The ledger of incremental builds (int_incremental_builds), when it exists. Read by name, not
   ref(): it is written at the end of a build, from the models that read this scope. #}
{% macro incremental_ledger() -%}
    {%- if execute -%}
        {{ return(adapter.get_relation(database=this.database, schema=this.schema, identifier='int_incremental_builds')) }}
    {%- else -%}
        {{ return(none) }}
    {%- endif -%}
{%- endmacro %}
