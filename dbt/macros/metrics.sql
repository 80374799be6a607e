{#
  The value-versus-volume metrics, each defined once, over additive columns (sums): the marts
  render them here, and the Python surfaces (report, alerts, demo) render these same macros over
  the marts' sums (yieldmeter.transform.metric_sql), so every number has one definition.

  Plain Jinja only (no dbt context): Python renders this file with jinja2.

  Unpriced calls (the policy, docs/metrics): an unpriced call costs 0 in the sums, so a money
  metric over a group with any unpriced call would be silently low. Money metrics are NULL
  (unknown) while unpriced_calls > 0; token and outcome metrics do not depend on prices.
#}

{% macro cost_per_successful_outcome_usd(cost='cost_usd', successes='successful_outcomes', unpriced='unpriced_calls') -%}
    if({{ successes }} > 0 and {{ unpriced }} = 0, CAST({{ cost }} / {{ successes }} AS Decimal(38, 12)), NULL)
{%- endmacro %}

{% macro tokens_per_outcome(tokens='total_tokens', outcomes='outcomes') -%}
    if({{ outcomes }} > 0, {{ tokens }} / {{ outcomes }}, NULL)
{%- endmacro %}

{% macro outcomes_per_million_tokens(successes='successful_outcomes', tokens='total_tokens') -%}
    if({{ tokens }} > 0, {{ successes }} * 1000000 / {{ tokens }}, NULL)
{%- endmacro %}

{% macro idle_token_share(idle='idle_tokens', tokens='total_tokens') -%}
    if({{ tokens }} > 0, {{ idle }} / {{ tokens }}, NULL)
{%- endmacro %}

{% macro waste_cost_share(waste='waste_cost_usd', cost='cost_usd', unpriced='unpriced_calls') -%}
    if({{ cost }} > 0 and {{ unpriced }} = 0, toFloat64({{ waste }}) / toFloat64({{ cost }}), NULL)
{%- endmacro %}

{% macro cache_hit_share(cached='cache_read_tokens', inputs='input_tokens') -%}
    if({{ inputs }} > 0, {{ cached }} / {{ inputs }}, NULL)
{%- endmacro %}

{% macro verbosity(outputs='output_tokens', inputs='input_tokens') -%}
    if({{ inputs }} > 0, {{ outputs }} / {{ inputs }}, NULL)
{%- endmacro %}

{% macro value_over_cost(value='outcome_value_usd', cost='cost_usd', unpriced='unpriced_calls') -%}
    if({{ cost }} > 0 and {{ unpriced }} = 0 and {{ value }} is not null,
       toFloat64({{ value }}) / toFloat64({{ cost }}), NULL)
{%- endmacro %}

{% macro is_fully_priced(unpriced='unpriced_calls') -%}
    CAST({{ unpriced }} = 0 AS Bool)
{%- endmacro %}
