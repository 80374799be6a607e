"""The alert rules over the rollups and raw tables: spend spike, error-rate spike, unpriced
model, dead-letter spike, budget control (the controls job's decisions).

Each is registered in :mod:`yieldmeter.alerts.registry` (which says what a rule is). The SQL
computes the numbers per entity; Python applies the thresholds, because thresholds differ per
org and team (``config.params(rule, org, team)``). The rules over the dbt marts live in
:mod:`yieldmeter.alerts.mart_rules`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from clickhouse_connect.driver.client import Client
from pydantic import Field, model_validator

from yieldmeter.alerts.model import (
    Finding, Severity, evaluated_hour, format_value, sql_string, sql_time, utc,
)
from yieldmeter.alerts.registry import PLANNED, RULES, RuleParams, RuleSpec, rule, settle, title

if TYPE_CHECKING:
    from yieldmeter.alerts.config import AlertsConfig

MAD_SCALE = Decimal("1.4826")  # makes the MAD estimate the standard deviation of normal data


# --- robust statistics -----------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    median: Decimal
    mad: Decimal  # median absolute deviation, unscaled
    points: int
    kind: str  # how the baseline was formed, for the message


def robust_baseline(samples: list[Decimal], kind: str) -> Baseline:
    median = statistics.median(samples)
    mad = statistics.median([abs(x - median) for x in samples])
    return Baseline(Decimal(median), Decimal(mad), len(samples), kind)


def robust_threshold(baseline: Baseline, k: Decimal, ratio: Decimal, floor: Decimal) -> Decimal:
    """The value must exceed all three: median + k·MAD (scaled), ratio × median, and a floor."""
    return max(baseline.median + k * MAD_SCALE * baseline.mad, ratio * baseline.median, floor)


# --- levels of the hourly rollup -------------------------------------------------------------

Level = Literal["org", "team", "app"]
LEVEL_COLUMNS: dict[str, tuple[str, ...]] = {
    "org": ("org_id",),
    "team": ("org_id", "team"),
    "app": ("org_id", "team", "app"),
}
ENTITY_NAME = {"org_id": "org", "team": "team", "app": "app"}


def _levels(config: AlertsConfig, name: str) -> list[str]:
    """Every level some org or team asked for; each entity is then checked against its own params."""
    wanted = {level for params in config.variants(name) if params.enabled for level in params.levels}
    return [level for level in LEVEL_COLUMNS if level in wanted]


def _entity(level: str, row: tuple) -> dict[str, str]:
    return {ENTITY_NAME[column]: value for column, value in zip(LEVEL_COLUMNS[level], row)}


def _where(entity: dict[str, str]) -> str:
    columns = {v: k for k, v in ENTITY_NAME.items()}
    return " AND ".join(f"{columns[name]} = {sql_string(value)}" for name, value in entity.items())


# --- spend spike -----------------------------------------------------------------------------


class SpendSpikeParams(RuleParams):
    levels: tuple[Level, ...] = Field(("team", "app"), description="Which entities to watch: org, team, app.")
    weeks: int = Field(4, ge=1, le=12, description="Baseline: the same hour of the week in this many previous weeks.")
    min_weeks: int = Field(2, ge=1, le=12, description="Fewer weeks of history than this: use the same hour of previous days.")
    days: int = Field(7, ge=1, le=28, description="Daily baseline: the same hour of the day in this many previous days.")
    min_days: int = Field(3, ge=1, le=28, description="Fewer days of history than this: use recent hours instead.")
    fallback_hours: int = Field(168, ge=24, le=168, description="Fallback baseline: up to this many previous hours.")
    min_fallback_hours: int = Field(24, ge=1, le=168, description="Less history than this: no baseline, no alert.")
    k: Decimal = Field(Decimal("3.5"), ge=0, description="Robust z: the value must exceed median + k × 1.4826 × MAD.")
    ratio: Decimal = Field(Decimal("1.5"), ge=1, description="... and exceed ratio × median.")
    min_cost_usd: Decimal = Field(Decimal("1"), ge=0, description="... and exceed this hourly cost.")
    critical_ratio: Decimal = Field(
        Decimal("3"), ge=1, description="Critical above this multiple of max(median, min_cost_usd)."
    )

    @model_validator(mode="after")
    def _history(self) -> SpendSpikeParams:
        if self.min_weeks > self.weeks:
            raise ValueError(f"min_weeks ({self.min_weeks}) cannot exceed weeks ({self.weeks})")
        if self.min_days > self.days:
            raise ValueError(f"min_days ({self.min_days}) cannot exceed days ({self.days})")
        if self.min_fallback_hours > self.fallback_hours:
            raise ValueError(
                f"min_fallback_hours ({self.min_fallback_hours}) cannot exceed fallback_hours ({self.fallback_hours})"
            )
        return self


SPEND_SQL = """
SELECT {keys}, value,
       arrayMap(i -> by_hour[{hour:DateTime('UTC')} - toIntervalWeek(i)],
                arrayFilter(i -> {hour:DateTime('UTC')} - toIntervalWeek(i) >= first_hour,
                            range(1, {weeks:UInt32} + 1))) AS weekly,
       arrayMap(i -> by_hour[{hour:DateTime('UTC')} - toIntervalDay(i)],
                arrayFilter(i -> {hour:DateTime('UTC')} - toIntervalDay(i) >= first_hour,
                            range(1, {days:UInt32} + 1))) AS daily,
       arrayMap(i -> by_hour[{hour:DateTime('UTC')} - toIntervalHour(i)],
                arrayFilter(i -> {hour:DateTime('UTC')} - toIntervalHour(i) >= first_hour,
                            range(1, {hours:UInt32} + 1))) AS recent
FROM (
    SELECT {keys},
           sumIf(cost, hour = {hour:DateTime('UTC')}) AS value,
           min(hour) AS first_hour,
           mapFromArrays(groupArray(hour), groupArray(cost)) AS by_hour  -- an absent hour reads as 0
    FROM (
        SELECT {keys}, hour, sum(cost_usd) AS cost  -- SummingMergeTree: parts may not be merged yet
        FROM calls_hourly
        WHERE hour >= {hour:DateTime('UTC')} - toIntervalHour({lookback:UInt32})
          AND hour <= {hour:DateTime('UTC')}
        GROUP BY {keys}, hour
    )
    GROUP BY {keys}
    HAVING value > 0
)
"""


@rule("spend_spike", SpendSpikeParams, tables=("calls_hourly",))
def spend_spike(client: Client, config: AlertsConfig, now: datetime) -> list[Finding]:
    """Hourly cost of an org, team or app far above its own baseline.

    Baseline: the median of the same hour of the week over the previous weeks (weekly
    rhythm); with too few weeks, of the same hour of the day over the previous days (daily
    rhythm); with too few days, of the previous 24-168 hours. History
    starts at the entity's first hour in the look-back window; hours without rows count
    as zero spend. An entity with less history than min_fallback_hours is not judged.
    """
    hour = evaluated_hour(now, settle(config))
    variants = [p for p in config.variants("spend_spike") if p.enabled]
    if not variants:
        return []
    weeks = max(p.weeks for p in variants)
    days = max(p.days for p in variants)
    hours = max(p.fallback_hours for p in variants)
    findings = []
    for level in _levels(config, "spend_spike"):
        keys = ", ".join(LEVEL_COLUMNS[level])
        rows = client.query(
            SPEND_SQL.replace("{keys}", keys),
            parameters={"hour": hour, "weeks": weeks, "days": days, "hours": hours,
                        "lookback": max(weeks * 168, days * 24, hours)},
        ).result_rows
        width = len(LEVEL_COLUMNS[level])
        for row in rows:
            entity = _entity(level, row[:width])
            value, weekly, daily, recent = row[width:]
            params = config.params("spend_spike", entity.get("org", ""), entity.get("team", ""))
            if not params.enabled or level not in params.levels:
                continue
            if len(weekly[: params.weeks]) >= params.min_weeks:
                samples = weekly[: params.weeks]
                baseline = robust_baseline(samples, f"median of the same hour in the previous {len(samples)} weeks")
            elif len(daily[: params.days]) >= params.min_days:
                # Days before hours: the daily rhythm (busy afternoons, quiet nights) is the
                # strongest pattern in spend, and a plain median of recent hours would call
                # every busy afternoon a spike.
                samples = daily[: params.days]
                baseline = robust_baseline(samples, f"median of the same hour on the previous {len(samples)} days")
            elif len(recent[: params.fallback_hours]) >= params.min_fallback_hours:
                samples = recent[: params.fallback_hours]
                baseline = robust_baseline(samples, f"median of the previous {len(samples)} hours")
            else:
                continue  # too little history to call anything a spike
            threshold = robust_threshold(baseline, params.k, params.ratio, params.min_cost_usd)
            if value <= threshold:
                continue
            critical = value > params.critical_ratio * max(baseline.median, params.min_cost_usd)
            findings.append(
                Finding(
                    rule="spend_spike",
                    entity=entity,
                    severity=Severity.CRITICAL if critical else Severity.WARNING,
                    title=title("Spend spike", entity),
                    value=value,
                    baseline=baseline.median,
                    threshold=threshold,
                    unit="USD/hour",
                    observed_at=hour,
                    summary=f"*{format_value(value, 'USD')}* spent in the hour from {hour:%Y-%m-%d %H:%M} UTC "
                    f"against a baseline of *{format_value(baseline.median, 'USD')}* ({baseline.kind}).",
                    details={"Baseline": baseline.kind, "MAD": format_value(baseline.mad, "USD")},
                    query=(
                        "SELECT model, user_id, sum(cost_usd) AS cost_usd, sum(calls) AS calls,\n"
                        "       sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,\n"
                        "       sum(reasoning_tokens) AS reasoning_tokens\n"
                        f"FROM calls_hourly\nWHERE {_where(entity)} AND hour = {sql_time(hour)}\n"
                        "GROUP BY model, user_id ORDER BY cost_usd DESC LIMIT 20"
                    ),
                )
            )
    return findings


# --- error-rate spike ------------------------------------------------------------------------


class ErrorRateParams(RuleParams):
    levels: tuple[Level, ...] = Field(("app",), description="Which entities to watch: org, team, app.")
    baseline_hours: int = Field(24, ge=1, le=168, description="Baseline: the pooled error rate of these previous hours.")
    min_calls: int = Field(20, ge=1, description="Ignore hours with fewer calls than this.")
    min_errors: int = Field(5, ge=1, description="Ignore hours with fewer errors than this.")
    min_rate: Decimal = Field(Decimal("0.05"), ge=0, le=1, description="The error share must exceed this ...")
    ratio: Decimal = Field(Decimal("2"), ge=1, description="... and this multiple of the baseline share.")
    critical_rate: Decimal = Field(Decimal("0.5"), ge=0, le=1, description="Critical at or above this error share.")


ERROR_SQL = """
SELECT {keys}, errors_now, calls_now,
       arrayMap(i -> errors_by_hour[{hour:DateTime('UTC')} - toIntervalHour(i)], range(1, {hours:UInt32} + 1)),
       arrayMap(i -> calls_by_hour[{hour:DateTime('UTC')} - toIntervalHour(i)], range(1, {hours:UInt32} + 1))
FROM (
    SELECT {keys},
           sumIf(errors, hour = {hour:DateTime('UTC')}) AS errors_now,
           sumIf(calls, hour = {hour:DateTime('UTC')}) AS calls_now,
           mapFromArrays(groupArray(hour), groupArray(errors)) AS errors_by_hour,
           mapFromArrays(groupArray(hour), groupArray(calls)) AS calls_by_hour
    FROM (
        SELECT {keys}, hour, sum(errors) AS errors, sum(calls) AS calls
        FROM calls_hourly
        WHERE hour >= {hour:DateTime('UTC')} - toIntervalHour({hours:UInt32}) AND hour <= {hour:DateTime('UTC')}
        GROUP BY {keys}, hour
    )
    GROUP BY {keys}
    HAVING errors_now > 0
)
"""


def _share(part: int, whole: int) -> Decimal:
    return (Decimal(part) / Decimal(whole)).quantize(Decimal("1e-12")) if whole else Decimal(0)


@rule("error_rate_spike", ErrorRateParams, tables=("calls_hourly",))
def error_rate_spike(client: Client, config: AlertsConfig, now: datetime) -> list[Finding]:
    """Share of failed calls of an entity in the last hour far above its recent rate."""
    hour = evaluated_hour(now, settle(config))
    variants = [p for p in config.variants("error_rate_spike") if p.enabled]
    if not variants:
        return []
    hours = max(p.baseline_hours for p in variants)
    findings = []
    for level in _levels(config, "error_rate_spike"):
        rows = client.query(
            ERROR_SQL.replace("{keys}", ", ".join(LEVEL_COLUMNS[level])), parameters={"hour": hour, "hours": hours}
        ).result_rows
        width = len(LEVEL_COLUMNS[level])
        for row in rows:
            entity = _entity(level, row[:width])
            errors, calls, errors_by_hour, calls_by_hour = row[width:]
            params = config.params("error_rate_spike", entity.get("org", ""), entity.get("team", ""))
            if not params.enabled or level not in params.levels:
                continue
            if calls < params.min_calls or errors < params.min_errors:
                continue
            errors_before = sum(errors_by_hour[: params.baseline_hours])
            calls_before = sum(calls_by_hour[: params.baseline_hours])
            value, baseline = _share(errors, calls), _share(errors_before, calls_before)
            threshold = max(params.min_rate, params.ratio * baseline)
            if value <= threshold:
                continue
            findings.append(
                Finding(
                    rule="error_rate_spike",
                    entity=entity,
                    severity=Severity.CRITICAL if value >= params.critical_rate else Severity.WARNING,
                    title=title("Error-rate spike", entity),
                    value=value,
                    baseline=baseline,
                    threshold=threshold,
                    unit="share",
                    observed_at=hour,
                    summary=f"*{format_value(value, 'share')}* of calls failed ({errors:,} of {calls:,}) in the hour "
                    f"from {hour:%Y-%m-%d %H:%M} UTC, against *{format_value(baseline, 'share')}* over the "
                    f"previous {params.baseline_hours} hours.",
                    details={"Errors": f"{errors:,} of {calls:,} calls"},
                    query=(
                        "SELECT provider, model, sum(errors) AS errors, sum(calls) AS calls,\n"
                        "       round(errors / calls, 3) AS error_share\n"
                        f"FROM calls_hourly\nWHERE {_where(entity)} AND hour = {sql_time(hour)}\n"
                        "GROUP BY provider, model ORDER BY errors DESC"
                    ),
                )
            )
    return findings


# --- unpriced model --------------------------------------------------------------------------


class UnpricedParams(RuleParams):
    window_hours: int = Field(24, ge=1, le=168, description="Look for unpriced calls in this many past hours.")
    min_calls: int = Field(1, ge=1, description="Fire from this many unpriced calls of one model.")
    critical_calls: int = Field(1000, ge=1, description="Critical from this many unpriced calls.")


UNPRICED_SQL = """
SELECT provider, model, sum(unpriced_calls) AS unpriced, sum(calls) AS calls,
       uniqExact(org_id) AS orgs, arraySort(groupUniqArray(5)(org_id)) AS some_orgs
FROM calls_hourly
WHERE hour > {hour:DateTime('UTC')} - toIntervalHour({hours:UInt32}) AND hour <= {hour:DateTime('UTC')}
GROUP BY provider, model
HAVING unpriced > 0
ORDER BY provider, model
"""


@rule("unpriced_model", UnpricedParams, tables=("calls_hourly",))
def unpriced_model(client: Client, config: AlertsConfig, now: datetime) -> list[Finding]:
    """A model is being called with no known price: its spend is missing from every report.

    One incident per provider and model (the fix, a price, is global); it resolves once a
    whole window passes without unpriced calls.
    """
    params = config.params("unpriced_model", "", "")
    if not params.enabled:
        return []
    hour = evaluated_hour(now, settle(config))
    start = hour - timedelta(hours=params.window_hours - 1)
    rows = client.query(UNPRICED_SQL, parameters={"hour": hour, "hours": params.window_hours}).result_rows
    findings = []
    for provider, model, unpriced, calls, orgs, some_orgs in rows:
        if unpriced < params.min_calls:
            continue
        entity = {"provider": provider, "model": model}
        window = f"{params.window_hours}h"
        findings.append(
            Finding(
                rule="unpriced_model",
                entity=entity,
                severity=Severity.CRITICAL if unpriced >= params.critical_calls else Severity.WARNING,
                title=f"Unpriced model: {provider} / {model}",
                value=Decimal(unpriced),
                baseline=Decimal(0),  # every call should have a price
                threshold=Decimal(params.min_calls),
                unit=f"unpriced calls/{window}",
                observed_at=start,
                summary=f"*{unpriced:,}* of {calls:,} calls to `{provider}/{model}` in the last {window} have no "
                "known price, so their cost is missing from every report. Add a price (`yieldmeter prices`).",
                details={
                    "All calls": f"{calls:,}",
                    "Orgs": ", ".join(some_orgs) + (f" (+{orgs - len(some_orgs)} more)" if orgs > 5 else ""),
                },
                query=(
                    "SELECT org_id, team, app, sum(unpriced_calls) AS unpriced_calls, sum(calls) AS calls\n"
                    f"FROM calls_hourly\nWHERE provider = {sql_string(provider)} AND model = {sql_string(model)}\n"
                    f"  AND hour >= {sql_time(start)}\n"
                    "GROUP BY org_id, team, app ORDER BY unpriced_calls DESC"
                ),
            )
        )
    return findings


# --- dead-letter spike -----------------------------------------------------------------------


class DeadLetterParams(RuleParams):
    baseline_hours: int = Field(168, ge=24, le=168, description="Baseline: median dead letters/hour over these hours.")
    k: Decimal = Field(Decimal("3.5"), ge=0, description="Robust z: exceed median + k × 1.4826 × MAD ...")
    ratio: Decimal = Field(Decimal("2"), ge=1, description="... and ratio × median ...")
    min_count: int = Field(10, ge=1, description="... and this many dead letters in the hour.")
    critical_ratio: Decimal = Field(Decimal("10"), ge=1, description="Critical above this multiple of max(median, min_count).")


DEAD_LETTER_SQL = """
SELECT source_topic, value, top_reasons,
       arrayMap(i -> by_hour[{hour:DateTime('UTC')} - toIntervalHour(i)], range(1, {hours:UInt32} + 1)) AS samples
FROM (
    SELECT source_topic,
           sumIf(n, hour = {hour:DateTime('UTC')}) AS value,
           anyIf(reasons, hour = {hour:DateTime('UTC')}) AS top_reasons,
           mapFromArrays(groupArray(hour), groupArray(n)) AS by_hour  -- an absent hour reads as 0
    FROM (
        SELECT source_topic, toDateTime(toStartOfHour(rejected_at), 'UTC') AS hour,
               count() AS n, topK(3)(reason) AS reasons
        FROM dead_letters FINAL  -- a re-delivered dead letter counts once
        WHERE rejected_at >= {hour:DateTime('UTC')} - toIntervalHour({hours:UInt32})
          AND rejected_at < {hour:DateTime('UTC')} + toIntervalHour(1)
        GROUP BY source_topic, hour
    )
    GROUP BY source_topic
    HAVING value > 0
)
ORDER BY source_topic
"""


@rule("dead_letter_spike", DeadLetterParams, tables=("dead_letters",))
def dead_letter_spike(client: Client, config: AlertsConfig, now: datetime) -> list[Finding]:
    """Dead letters of one source topic in the last hour far above the hourly median.

    Every hour of the baseline window counts, zero when nothing was rejected: dead letters
    are normally rare, so the median is often 0 and min_count is what keeps it quiet.
    """
    params = config.params("dead_letter_spike", "", "")
    if not params.enabled:
        return []
    hour = evaluated_hour(now, settle(config))
    rows = client.query(DEAD_LETTER_SQL, parameters={"hour": hour, "hours": params.baseline_hours}).result_rows
    findings = []
    for topic, value, reasons, samples in rows:
        baseline = robust_baseline([Decimal(s) for s in samples], f"median of the previous {len(samples)} hours")
        value = Decimal(value)
        threshold = robust_threshold(baseline, params.k, params.ratio, Decimal(params.min_count))
        if value <= threshold:
            continue
        critical = value > params.critical_ratio * max(baseline.median, Decimal(params.min_count))
        entity = {"topic": topic}
        findings.append(
            Finding(
                rule="dead_letter_spike",
                entity=entity,
                severity=Severity.CRITICAL if critical else Severity.WARNING,
                title=f"Dead-letter spike: {topic}",
                value=value,
                baseline=baseline.median,
                threshold=threshold,
                unit="dead letters/hour",
                observed_at=hour,
                summary=f"*{value:,}* records from `{topic}` were rejected in the hour from "
                f"{hour:%Y-%m-%d %H:%M} UTC against a baseline of *{baseline.median:,}* ({baseline.kind}).",
                details={"Top reasons": "; ".join(r[:80] for r in reasons)},
                query=(
                    "SELECT reason, count() AS dead_letters, min(rejected_at) AS first, any(payload) AS example\n"
                    f"FROM dead_letters FINAL\nWHERE source_topic = {sql_string(topic)}\n"
                    f"  AND rejected_at >= {sql_time(hour)} AND rejected_at < {sql_time(hour + timedelta(hours=1))}\n"
                    "GROUP BY reason ORDER BY dead_letters DESC"
                ),
            )
        )
    return findings


# --- budget controls -------------------------------------------------------------------------


class BudgetControlParams(RuleParams):
    states: tuple[Literal["warn", "throttle", "block"], ...] = Field(
        ("warn", "throttle", "block"), description="Control states that open an incident (warn: past warn_at_pct)."
    )


CONTROLS_SQL = """
SELECT c.budget_id, c.org_id, c.team, c.user_id, c.app, c.api_key, c.period, c.time_zone, c.period_start,
       c.period_end, c.state, c.action, c.limit_usd, c.spent_usd, c.warn_at_pct, c.calls, c.unpriced_calls,
       c.reason, c.updated_at
FROM controls AS c FINAL
-- a deleted budget's control is withdrawn (FINAL leaves the deleted budget out)
INNER JOIN (SELECT budget_id FROM budgets FINAL) AS b ON b.budget_id = c.budget_id
WHERE c.period_start <= {now:DateTime64(3, 'UTC')} AND c.period_end > {now:DateTime64(3, 'UTC')}
ORDER BY c.budget_id
"""


@rule("budget_control", BudgetControlParams, tables=("controls", "budgets"),
      remedy="run `yieldmeter migrate`, and `yieldmeter run` with budgets set (`yieldmeter budgets set`)")
def budget_control(client: Client, config: AlertsConfig, now: datetime) -> list[Finding]:
    """A budget's scope past its warning, throttled or blocked, as the controls job decided it.

    Reads the latest control of each budget (usage.controls, ingested as the table controls):
    the same decision the gateways apply, so Slack says what the gateways do. One incident per
    budget, open while its period lasts; warning for warn, critical for throttle and block.
    """
    findings = []
    for (budget_id, org, team, user, app, api_key, period, zone, start, end, state, action, limit, spent, warn_pct,
         calls, unpriced, reason, updated) in client.query(CONTROLS_SQL, parameters={"now": now}).result_rows:
        params = config.params("budget_control", org, team)
        if not params.enabled or state not in params.states:
            continue
        scope = {"team": team, "user": user, "app": app, "api_key": api_key}
        entity = {"org": org, **{name: value for name, value in scope.items() if value}, "period": period}
        threshold = Decimal(limit) if state != "warn" else Decimal(limit) * Decimal(warn_pct) / 100
        findings.append(
            Finding(
                rule="budget_control",
                entity=entity,
                severity=Severity.WARNING if state == "warn" else Severity.CRITICAL,
                title=title(f"Budget {'warning' if state == 'warn' else state}", entity),
                value=Decimal(spent),
                baseline=Decimal(limit),
                threshold=threshold,
                unit=f"USD/{period}",
                observed_at=utc(start),
                summary=reason,
                details={
                    "Spent": format_value(Decimal(spent), "USD"),
                    "Budget": f"{format_value(Decimal(limit), 'USD')} a {period}, then {action}",
                    "Period": f"{utc(start):%Y-%m-%d %H:%M} to {utc(end):%Y-%m-%d %H:%M} UTC ({zone})",
                    "Calls": f"{calls:,}" + (f", {unpriced:,} without a price (not in the spend)" if unpriced else ""),
                    "Decided at": f"{utc(updated):%Y-%m-%d %H:%M:%S} UTC",
                },
                query=(
                    "SELECT team, user_id, app, model, count() AS calls, sum(cost_usd) AS cost_usd,\n"
                    "       countIf(pricing_status != 'priced') AS unpriced_calls\n"
                    f"FROM calls FINAL\nWHERE org_id = {sql_string(org)}"
                    + "".join(f" AND {column} = {sql_string(value)}"
                              for column, value in (("team", team), ("user_id", user), ("app", app)) if value)
                    + (f" AND attributes['api_key'] = {sql_string(api_key)}" if api_key else "")
                    + f"\n  AND occurred_at >= {sql_time(utc(start))} AND occurred_at < {sql_time(utc(end))}\n"
                    "GROUP BY team, user_id, app, model ORDER BY cost_usd DESC"
                ),
            )
        )
    return findings


__all__ = ["PLANNED", "RULES", "RuleParams", "RuleSpec", "robust_baseline", "robust_threshold", "rule"]
