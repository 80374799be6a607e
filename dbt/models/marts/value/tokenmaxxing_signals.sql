{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='week',
          order_by='(week, entity_type, app, outcome_type, org_id, entity_id)') }}
-- Incremental by week (macros/incremental.sql): a week's peers are that week's entities, and its
-- growth compares it with the week before, so the weeks of the days this build rebuilt
-- (rebuilt_days) and the weeks after them are computed again, from those weeks and the ones before.
-- depends_on: {{ ref('int_rebuild_scope') }}

-- Tokenmaxxing: token volume high or rising against peers while outcome yield is low.
-- Entities: users (per app), teams (per app), and each org's app. Peers: the entities of the
-- same kind on the same app and outcome type that week, across orgs. Volumes and yields are
-- heavy-tailed and multiplicative, so the robust z-scores are of their logarithms:
--   z = (ln x - median(ln x)) / (1.4826 * MAD(ln x)),
-- the 1.4826 making the MAD a standard deviation for normal data. Yield is successful outcomes
-- per million tokens, with half an outcome added so a week without successes still has a
-- finite (very low) yield. Low yield also needs the shortfall to exceed count noise: the
-- successes fall short of what the peer median yield predicts for the entity's tokens by more
-- than tokenmaxxing_shortfall_z Poisson standard deviations (a user with three leads a week is
-- not judged on one missing lead). A flag needs low yield AND (high volume OR volume outpacing
-- outcomes while at or above the peer median) in a week with tokenmaxxing_min_days days of data;
-- reason codes and the numbers come with it.
{% set volume_z = var('tokenmaxxing_volume_z') %}
{% set yield_z = var('tokenmaxxing_yield_z') %}
{% set min_peers = var('tokenmaxxing_min_peers') | int %}
{% set min_growth = var('tokenmaxxing_min_growth') %}
{% set growth_ratio = var('tokenmaxxing_growth_ratio') %}
{% set shortfall_z = var('tokenmaxxing_shortfall_z') %}
{% set min_days = var('tokenmaxxing_min_days') | int %}
{% set mondays = rebuilt_days(weeks=true) %}
{% if mondays is none %}
    {% set weeks, read_weeks = none, none %}
{% else %}
    {% set weeks, read_weeks = [], [] %}
    {% for monday in mondays %}
        {% set day = modules.datetime.date.fromisoformat(monday) %}
        {% do weeks.extend([monday, (day + modules.datetime.timedelta(days=7)).isoformat()]) %}
        {% do read_weeks.extend([(day - modules.datetime.timedelta(days=7)).isoformat(), monday,
                                 (day + modules.datetime.timedelta(days=7)).isoformat()]) %}
    {% endfor %}
{% endif %}
{% set in_weeks = in_days('week', weeks | unique | list if weeks is not none else none) %}
{% set in_read_weeks = in_days('toMonday(day)', read_weeks | unique | list if read_weeks is not none else none) %}

-- Summed from value_metrics_daily (its one definition of each count: sessions on the day they
-- started), so a week costs its days' rows there, not its calls.
with usage as (
    select
        -- LowCardinality, as in the fct_ marts
        toMonday(day) as week, toLowCardinality(org_id) as org_id, team, user_id, toLowCardinality(app) as app,
        outcome_type,
        sum(total_tokens) as total_tokens,
        CAST(sum(cost_usd) AS Decimal(38, 21)) as cost_usd,
        sum(calls) as calls,
        sum(sessions) as sessions,
        sum(outcomes) as outcomes,
        sum(successful_outcomes) as successful_outcomes
    from {{ ref('value_metrics_daily') }}
    where {{ in_read_weeks }}
    group by week, org_id, team, user_id, app, outcome_type
    -- the entities with calls that week
    having sum(calls) > 0
),

-- Days with any call in each week. Growth compares a week only with a week before it that has
-- as many days of data: the weeks at the edges of the data (the first, the current one) are
-- partial, and neither their sums nor their daily rates compare (a Sunday is not a Tuesday).
coverage as (
    select toMonday(day) as week, toFloat64(uniqExact(day)) as days
    from {{ ref('value_metrics_daily') }}
    where calls > 0 and {{ in_read_weeks }}
    group by week
),

users as (
    select u.*, c.days as days
    from usage as u
    inner join coverage as c on u.week = c.week
),

entities as (
    select week, 'user' as entity_type, org_id, team, user_id as entity_id, app, outcome_type,
        total_tokens, cost_usd, calls, sessions, outcomes, successful_outcomes, days
    from users
    union all
    select week, 'team', org_id, team, team, app, outcome_type,
        sum(total_tokens), sum(cost_usd), sum(calls), sum(sessions), sum(outcomes), sum(successful_outcomes), any(days)
    from users
    group by week, org_id, team, app, outcome_type
    union all
    select week, 'app', org_id, '', app, app, outcome_type,
        sum(total_tokens), sum(cost_usd), sum(calls), sum(sessions), sum(outcomes), sum(successful_outcomes), any(days)
    from users
    group by week, org_id, app, outcome_type
),

measured as (
    select
        *,
        (successful_outcomes + 0.5) * 1000000 / total_tokens as outcome_yield,
        log(total_tokens) as log_volume,
        log(outcome_yield) as log_yield
    from entities
    where total_tokens > 0
),

centred as (
    select
        *,
        count() over peers as peers,
        {{ median_exact('total_tokens') }} over peers as peer_median_tokens,
        {{ median_exact('outcome_yield') }} over peers as peer_median_yield,
        {{ median_exact('log_volume') }} over peers as median_log_volume,
        {{ median_exact('log_yield') }} over peers as median_log_yield
    from measured
    window peers as (partition by week, entity_type, app, outcome_type)
),

scored as (
    select
        *,
        {{ median_exact('abs(log_volume - median_log_volume)') }} over peers as mad_log_volume,
        {{ median_exact('abs(log_yield - median_log_yield)') }} over peers as mad_log_yield,
        if(peers >= {{ min_peers }} and mad_log_volume > 0,
           (log_volume - median_log_volume) / (1.4826 * mad_log_volume), NULL) as volume_z,
        if(peers >= {{ min_peers }} and mad_log_yield > 0,
           (log_yield - median_log_yield) / (1.4826 * mad_log_yield), NULL) as yield_z,
        peer_median_yield * total_tokens / 1000000 as expected_successful_outcomes,
        if(expected_successful_outcomes > 0,
           (successful_outcomes - expected_successful_outcomes) / sqrt(expected_successful_outcomes), NULL)
            as shortfall_z
    from centred
    window peers as (partition by week, entity_type, app, outcome_type)
),

with_growth as (
    select
        s.*,
        p.total_tokens as previous_tokens,
        p.successful_outcomes as previous_successful_outcomes,
        if(p.total_tokens > 0 and p.days = s.days, s.total_tokens / p.total_tokens, NULL) as volume_growth,
        if(p.total_tokens > 0 and p.days = s.days,
           (s.successful_outcomes + 0.5) / (p.successful_outcomes + 0.5), NULL) as outcome_growth
    from scored as s
    left join (
        select week + 7 as next_week, entity_type, org_id, entity_id, app, outcome_type,
            total_tokens, successful_outcomes, days
        from measured
    ) as p
        on s.week = p.next_week and s.entity_type = p.entity_type and s.org_id = p.org_id
        and s.entity_id = p.entity_id and s.app = p.app and s.outcome_type = p.outcome_type
),

flagged as (
    select
        *,
        {{ as_bool('volume_z >= ' ~ volume_z) }} as is_high_volume,
        {{ as_bool('yield_z <= -' ~ yield_z ~ ' and shortfall_z <= -' ~ shortfall_z) }} as is_low_yield,
        {{ as_bool('volume_growth >= 1 + ' ~ min_growth ~ ' and volume_growth >= ' ~ growth_ratio
                   ~ ' * outcome_growth and total_tokens >= peer_median_tokens') }} as is_volume_outpacing_outcomes
    from with_growth
)

select
    week,
    entity_type,
    org_id,
    team,
    entity_id,
    app,
    outcome_type,
    total_tokens,
    cost_usd,
    calls,
    sessions,
    outcomes,
    successful_outcomes,
    outcome_yield,
    peers,
    peer_median_tokens,
    peer_median_yield,
    volume_z,
    yield_z,
    expected_successful_outcomes,
    shortfall_z,
    previous_tokens,
    previous_successful_outcomes,
    volume_growth,
    outcome_growth,
    is_high_volume,
    is_low_yield,
    is_volume_outpacing_outcomes,
    toUInt8(days) as days_of_data,
    -- A week with only a day or two of data (the first one) is shown but not judged.
    {{ as_bool('is_low_yield and (is_high_volume or is_volume_outpacing_outcomes) and days >= ' ~ min_days) }} as is_flagged,
    arrayFilter(x -> x != '', [
        if(is_high_volume, 'high_volume', ''),
        if(is_low_yield, 'low_yield', ''),
        if(is_volume_outpacing_outcomes, 'volume_outpaces_outcomes', '')
    ]) as reasons
from flagged
where {{ in_weeks }}
