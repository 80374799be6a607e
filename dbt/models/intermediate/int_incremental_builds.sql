{{ config(materialized='incremental', incremental_strategy='append', order_by='built_at') }}

-- One row per build that built every incremental model: when it started (dbt's run_started_at).
-- The next build rebuilds what was ingested since then (int_rebuild_scope). It depends on every
-- incremental model, so dbt skips it when one of them (or one of their tests) failed, and the
-- next build starts from the last good one. A build that selected only some of them adds nothing.
-- With the version of the project that built it (yieldmeter/transform.py, project_version): a
-- warehouse built by another version is rebuilt from scratch (project_changed), not incrementally.
{% set incremental_models = ['int_changed_keys', 'int_rebuild_scope', 'int_session_fragments', 'int_calls_sessionized', 'int_sessions_merged',
    'int_outcome_attribution', 'fct_calls', 'fct_sessions', 'fct_outcome_attributions', 'fct_outcomes',
    'value_metrics_daily', 'tokenmaxxing_signals', 'focus_ai_spend'] %}
{% set refs = [] %}
{% for name in incremental_models %}{% do refs.append(ref(name)) %}{% endfor %}
{% set selected = selected_resources | default([]) %}
{% set built_all = (selected | length == 0) or (incremental_models | reject('in', selected | map('replace', 'model.' ~ project_name ~ '.', '') | list) | list | length == 0) %}

select toDateTime64('{{ build_started_at() }}', 3, 'UTC') as built_at,
    '{{ env_var('YIELDMETER_DBT_PROJECT_VERSION', '') }}' as project_version
{% if not built_all %}where false{% endif %}
