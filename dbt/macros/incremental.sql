{#
  Incremental builds (dbt/README.md, "Incremental builds"). A model built incrementally rebuilds
  only the rows of its unit of rebuild that int_changed_keys or int_rebuild_scope list for this
  build: session keys (a call's and a session's every input lies in its session key's fragments,
  calls and prices), outcome ids, and days or weeks. Its incremental_strategy deletes the rows of
  those keys and inserts them rebuilt (delete+insert), so a refresh costs what changed and lands
  every row exactly once.
  On a full build (no table yet, --full-refresh, or no ledger: no build has finished since the
  ledger was created) the filters are `true`: every key is rebuilt.
#}

{# The SQL condition "column holds a key of `kind` this build rebuilds" (true on a full build).
   Two scopes, in build order: int_changed_keys (what changed: the intermediate models by session
   key and the attribution read it) and int_rebuild_scope (those keys, and the sessions whose
   outcomes or app outcome type changed: the marts read it). #}
{% macro in_rebuild_scope(column, kind='session_key') -%}
    {{- _in_scope(column, kind, ref('int_rebuild_scope')) -}}
{%- endmacro %}

{% macro in_changed_keys(column, kind='session_key') -%}
    {{- _in_scope(column, kind, ref('int_changed_keys')) -}}
{%- endmacro %}

{# The calls table's sorting key (infra/clickhouse/migrations/0004): the identity its FINAL
   collapses versions by, and the only columns it can skip granules by. #}
{% macro calls_sorting_key() -%}
    (org_id, team, app, toStartOfHour(occurred_at), event_id)
{%- endmacro %}

{# "this calls row is one of the changed keys' calls" (true on a full build), as a condition on
   the calls table's sorting key: a FINAL read of calls can only
   skip granules by its sorting key (the rows it collapses share one), so a filter on session_key
   alone makes it read and collapse every call first. Every version of a call has the call's
   sorting key, so this keeps all versions of the changed keys' calls, and the filter on
   session_key that goes with it then keeps the calls whose latest version is in a changed key. #}
{% macro changed_calls() -%}
    {%- if is_incremental() and incremental_ledger() is not none -%}
        {{ calls_sorting_key() }} in (
            select {{ calls_sorting_key() }}
            from {{ source('warehouse', 'calls') }}
            where {{ in_changed_keys('session_key') }})
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{% macro _in_scope(column, kind, scope) -%}
    {%- if is_incremental() and incremental_ledger() is not none -%}
        {{ column }} in (select key from {{ scope }} where kind = '{{ kind }}')
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{# A table of this project read by name, beside `near` (default: this model), or none: one a model
   or test reads but must not depend on (ref() would make it run after it). #}
{% macro relation_named(name, near=none) -%}
    {%- set near = near or this -%}
    {{ return(adapter.get_relation(database=near.database, schema=near.schema, identifier=name)) }}
{%- endmacro %}

{# When this build started (dbt's run_started_at, UTC, to the millisecond), as the ledger
   (int_incremental_builds.built_at) and the scope's attempt rows (int_rebuild_scope) write it. #}
{% macro build_started_at() -%}
    {{- run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] -}}
{%- endmacro %}

{# The core marts' pre-hook. int_rebuild_scope compares this build's outcomes with the previous
   build's fct_ marts, so a build that rebuilds one of them without building the scope first (a
   --select build that leaves int_rebuild_scope out: the mart is rebuilt for an earlier build's
   scope, or whole) changes what the next build compares with. It writes this build's start to
   the scope as an attempt, so the next build sees an unfinished build and rebuilds every key. A
   build that built the scope has written that row already. #}
{% macro record_scope_attempt() -%}
    {%- set scope = relation_named('int_rebuild_scope') if execute else none -%}
    {%- if scope is not none -%}
        insert into {{ scope }} (kind, key)
        select 'attempt', '{{ build_started_at() }}'
        where '{{ build_started_at() }}' not in (select key from {{ scope }} where kind = 'attempt')
    {%- endif -%}
{%- endmacro %}

{# The ledger of incremental builds (int_incremental_builds), when it exists and this build is
   incremental; none on a full build (no ledger yet, --full-refresh: every key is rebuilt). Read by
   name, not ref(): it is written at the end of a build, from the models that read this scope.
   Beside `near` (default: this model; a test's own relation is in another schema). #}
{% macro incremental_ledger(near=none) -%}
    {%- if execute and not flags.FULL_REFRESH -%}
        {{ return(relation_named('int_incremental_builds', near)) }}
    {%- else -%}
        {{ return(none) }}
    {%- endif -%}
{%- endmacro %}

{# What was ingested since the last finished build started (the ledger's latest row), less var
   incremental_lookback_minutes: an insert under way while that build read, the clock of a server. #}
{% macro changed_since(ledger) -%}
    (select max(built_at) - interval {{ var('incremental_lookback_minutes') | int }} minute from {{ ledger }})
{%- endmacro %}

{# int_changed_keys' post-hook: adds an 'outcome_id' row for each outcome that changed or that a
   changed session key may now take or lose (see the model): new ones (ingested since the last
   finished build), and those sharing a link with a changed key's fragments or calls: the same
   org and session id, the same org and trace, or the same user and app at or after the first of
   those fragments. Each link is read on its own: one filter that ORs them reads every outcome
   through all of them. The sources are read without FINAL: a key is all that is needed. #}
{% macro changed_outcomes() -%}
    {%- set ledger = incremental_ledger() -%}
    {%- if ledger is none -%}
        select 1 where false
    {%- else -%}
    {%- set since = changed_since(ledger) -%}
    {%- set outcomes = source('warehouse', 'outcomes') -%}
    {%- set fragments -%}
        (select org_id, user_id, app, session_id, started_at from {{ source('warehouse', 'sessions') }}
         where session_key in (select key from {{ this }} where kind = 'session_key'))
    {%- endset -%}
    insert into {{ this }} (kind, key)
    select 'outcome_id', outcome_id from (
        select outcome_id from {{ outcomes }} where _ingested_at >= {{ since }}
        union distinct
        select outcome_id from {{ outcomes }}
        where session_id != '' and (org_id, session_id) in (
            select org_id, session_id from {{ fragments }} where session_id != '')
        union distinct
        select outcome_id from {{ outcomes }}
        where trace_id != '' and (org_id, trace_id) in (
            select org_id, trace_id from {{ source('warehouse', 'calls') }}
            where trace_id != '' and session_key in (select key from {{ this }} where kind = 'session_key'))
        union distinct
        select o.outcome_id
        from {{ outcomes }} as o
        inner join (
            select org_id, user_id, app, min(started_at) as first_started_at
            from {{ fragments }}
            group by org_id, user_id, app
        ) as k on o.org_id = k.org_id and o.user_id = k.user_id and o.app = k.app
        where o.occurred_at >= k.first_started_at
    )
    {%- endif -%}
{%- endmacro %}

{# The days this build rebuilds (with weeks=true, the Mondays of their weeks), as 'YYYY-MM-DD'
   strings, or none on a full build: int_rebuild_scope's 'day' rows (scope_days). Asked once per
   model and written into the SQL as constants (in_days): a subquery would run again in every
   part of a model that reads it. #}
{% macro rebuilt_days(weeks=false) -%}
    {%- if not (execute and is_incremental() and incremental_ledger() is not none) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set days -%}
        select distinct {{ 'toString(toMonday(toDate(key)))' if weeks else 'key' }} as day
        from {{ ref('int_rebuild_scope') }} where kind = 'day' order by day
    {%- endset -%}
    {%- set found = [] -%}
    {%- for row in run_query(days).rows -%}{%- do found.append(row[0] | string) -%}{%- endfor -%}
    {{ return(found) }}
{%- endmacro %}

{# int_rebuild_scope's post-hook: adds a 'day' row for each day that holds a row of its keys, in the
   fct_ marts as the last build left them or as this one rebuilds them: the days of the marts by
   day (and week) that change. Read once here, rather than by each of those marts. The previous
   marts are read by name (this runs before they are rebuilt); the rebuilt rows are the
   intermediate models' (calls keep their day; an outcome or a session may move to another). #}
{% macro scope_days() -%}
    {%- if incremental_ledger() is none -%}
        select 1 where false
    {%- else -%}
    {%- set previous = {} -%}
    {%- for name in ['fct_sessions', 'fct_outcomes'] -%}
        {%- do previous.update({name: relation_named(name)}) -%}
    {%- endfor -%}
    {%- set keys -%}(select key from {{ this }} where kind = 'session_key'){%- endset -%}
    {%- set outcome_ids -%}(select key from {{ this }} where kind = 'outcome_id'){%- endset -%}
    insert into {{ this }} (kind, key)
    select 'day', toString(day) from (
        select toDate(occurred_at) as day from {{ ref('int_calls_sessionized') }} where session_key in {{ keys }}
        union distinct
        select toDate(started_at) from {{ ref('int_sessions_merged') }} where session_key in {{ keys }}
        union distinct
        select toDate(occurred_at) from {{ ref('int_outcome_attribution') }} where outcome_id in {{ outcome_ids }}
        {%- for name, relation in previous.items() if relation is not none %}
        union distinct
        select day from {{ relation }} where {{ 'session_key in ' ~ keys if name == 'fct_sessions' else 'outcome_id in ' ~ outcome_ids }}
        {%- endfor %}
    )
    {%- endif -%}
{%- endmacro %}

{# "column is one of these days" (true when days is none: a full build). #}
{% macro in_days(column, days) -%}
    {%- if days is none -%}
        true
    {%- elif days -%}
        {{ column }} in ({% for day in days %}toDate('{{ day }}'){{ ', ' if not loop.last }}{% endfor %})
    {%- else -%}
        false
    {%- endif -%}
{%- endmacro %}

{# Which rows a data test reads in a scheduled build (one that leaves out the full_history tests:
   `yieldmeter run`'s): the keys this build rebuilt, as a subquery of `unit` values, or none when
   every row is to be tested (`yieldmeter transform`, a full build). A unit is session_key,
   outcome_id, week (the rebuilt days' weeks and the weeks after, as tokenmaxxing_signals rebuilds
   them) or, for any other name, a day. `scope`: int_changed_keys for the intermediate models,
   int_rebuild_scope for the marts, beside the model `near`. Read by name: a test does not depend
   on them. #}
{% macro rebuilt_keys(unit, near, scope='int_rebuild_scope') -%}
    {%- if not execute or 'tag:full_history' not in (invocation_args_dict.get('exclude') or [])
          or incremental_ledger(near) is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set keys = relation_named(scope, near) -%}
    {%- if keys is none -%}
        {{ return(none) }}
    {%- elif unit in ('session_key', 'outcome_id') -%}
        {{ return("select key from " ~ keys ~ " where kind = '" ~ unit ~ "'") }}
    {%- elif unit == 'week' -%}
        {{ return("select toMonday(toDate(key)) + toIntervalDay(7 * after) from " ~ keys
                  ~ " array join [0, 1] as after where kind = 'day'") }}
    {%- else -%}
        {{ return("select toDate(key) from " ~ keys ~ " where kind = 'day'") }}
    {%- endif -%}
{%- endmacro %}

{# The rows of a delete+insert model this build rebuilt, as a condition (none: test every row; see
   rebuilt_keys): its unique_key is one this build rebuilt or, for a model with meta rebuilt_day
   (the day of a row by the table's sorting key, e.g. fct_calls'), the row lies on a day this build
   rebuilt: the rebuilt rows and the others of their days, found by the sorting key rather than by
   reading the key column of every row. With days_only, that day condition or none. #}
{% macro rebuilt_rows(relation, days_only=false) -%}
    {%- set nodes = (graph.nodes.values() | selectattr('resource_type', 'equalto', 'model')
                     | selectattr('name', 'equalto', relation.identifier) | list) if execute else [] -%}
    {%- if not nodes or nodes[0].config.incremental_strategy != 'delete+insert' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set node = nodes[0] -%}
    {%- set day = node.config.meta.get('rebuilt_day') -%}
    {%- if days_only and not day -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set column = day or node.config.unique_key -%}
    {%- set keys = rebuilt_keys('day' if day else column, relation,
                                'int_changed_keys' if node.fqn[1] == 'intermediate' else 'int_rebuild_scope') -%}
    {{ return(none if keys is none else column ~ ' in (' ~ keys ~ ')') }}
{%- endmacro %}
