"""The report's questions to the warehouse. Every number comes from the dbt marts (so spend is the
repriced, exact cost of fct_calls, and outcomes are counted as the marts count them), and every
ratio is the marts' own metric (yieldmeter.transform.metric_sql renders dbt/macros/metrics.sql
over the marts' sums), with the marts' unpriced-call policy: money metrics are None while a call
of the group is unpriced. Only the alerts come from their own table (the alert engine's).

A question whose mart is missing raises MartMissing with what to do; the report shows that in
place of the section.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from clickhouse_connect.driver.client import Client

from yieldmeter.errors import YieldmeterError
from yieldmeter.report_format import utc
from yieldmeter.transform import metric_sql

NOT_BUILT = "not available: run `yieldmeter transform`"

# The columns the report reads from each dbt mart (dbt/models/marts/*/*.sql).
MART_COLUMNS = {
    "fct_calls": {"occurred_at", "org_id", "team", "cost_usd"},
    "value_metrics_daily": {
        "day", "org_id", "team", "user_id", "app", "outcome_type", "calls", "unpriced_calls", "total_tokens",
        "idle_tokens", "cost_usd", "outcomes", "successful_outcomes"},
    "tokenmaxxing_signals": {
        "week", "entity_type", "org_id", "team", "entity_id", "app", "total_tokens", "cost_usd",
        "successful_outcomes", "reasons", "outcome_yield", "peer_median_yield", "peer_median_tokens", "volume_z",
        "yield_z", "volume_growth", "outcome_growth", "peers", "is_flagged"},
    "model_overkill": {
        "org_id", "app", "outcome_type", "model", "cheaper_model", "estimated_saving_usd", "success_rate",
        "cheaper_success_rate", "cost_per_successful_outcome_usd", "cheaper_cost_per_successful_outcome_usd",
        "sessions", "teams", "is_overkill"},
}

# the period: [start, end) on a DateTime64 column, or the days it spans (whole UTC days)
PERIOD_DAYS = "day >= toDate({start:DateTime('UTC')}) AND day < toDate({end:DateTime('UTC')})"


def period_at(column: str) -> str:
    return (f"{column} >= toDateTime64({{start:DateTime('UTC')}}, 3, 'UTC') "
            f"AND {column} < toDateTime64({{end:DateTime('UTC')}}, 3, 'UTC')")


class ReportError(YieldmeterError):
    """The report cannot be written; the message says what to do."""


class MartMissing(Exception):
    """A mart the question needs is not built (or was built by an older project); str() says what to do."""


class Warehouse:
    """The report's queries, with the period as parameters and the tables that exist."""

    def __init__(self, client: Client, start: datetime, end: datetime):
        self.client, self.start, self.end = client, start, end
        self.tables = {row[0] for row in client.query(
            "SELECT name FROM system.tables WHERE database = currentDatabase()").result_rows}

    def rows(self, sql: str, **parameters) -> list[tuple]:
        parameters = {"start": self.start, "end": self.end} | parameters
        # as in the dbt models: sum(x) AS x beside another aggregate of x means the column x
        return self.client.query(sql, parameters=parameters, settings={"prefer_column_name_to_alias": 1}).result_rows

    def has(self, *tables: str) -> bool:
        return all(t in self.tables for t in tables)

    def mart(self, table: str) -> str | None:
        """None when the mart exists with the columns the report reads, else why it cannot be used."""
        if table not in self.tables:
            return NOT_BUILT
        present = {row[0] for row in self.client.query(
            "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {t:String}",
            parameters={"t": table}).result_rows}
        missing = sorted(MART_COLUMNS[table] - present)
        if missing:  # built by an older version of the dbt project
            return f"not available: {table} has no column {', '.join(missing)}; rebuild it with `yieldmeter transform`"
        return None

    def need(self, *marts: str) -> None:
        for table in marts:
            if (why := self.mart(table)) is not None:
                raise MartMissing(why)


def period(client: Client, now: datetime | None, days: int) -> tuple[datetime, datetime]:
    """[start, end) in whole UTC days (the marts count by day): the ``days`` up to the end of
    ``now``'s day (default: the newest call's), from no earlier than the first day with calls, so a
    short history is not drawn as empty days."""
    tables = {row[0] for row in client.query("SHOW TABLES").result_rows}
    if "calls_hourly" not in tables:
        raise ReportError("The warehouse has no calls_hourly table: run `yieldmeter migrate` first.")
    # the time frame only (no number is read from the rollup): what hours hold calls
    first, last, rows = client.query("SELECT min(hour), max(hour), count() FROM calls_hourly").result_rows[0]
    latest = utc(now) - timedelta(microseconds=1) if now is not None else (
        utc(last) if rows else datetime.now(timezone.utc))
    end = latest.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    start = end - timedelta(days=days)
    first_day = utc(first).replace(hour=0) if rows else start
    return max(start, min(first_day, end - timedelta(days=1))), end


# --- the questions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Totals:
    """The period's headline numbers, from value_metrics_daily."""

    cost_usd: Decimal
    calls: int
    unpriced_calls: int
    tokens: int
    idle_tokens: int
    outcomes: int
    successful_outcomes: int
    cost_per_successful_outcome_usd: Decimal | None  # None: no success, or calls unpriced (unknown)
    idle_token_share: float | None


def totals(w: Warehouse) -> Totals:
    w.need("value_metrics_daily")
    (row,) = w.rows(
        "SELECT cost_usd, calls, unpriced_calls, total_tokens, idle_tokens, outcomes, successful_outcomes, "
        f"{metric_sql('cost_per_successful_outcome_usd')}, {metric_sql('idle_token_share')} "
        "FROM (SELECT sum(cost_usd) AS cost_usd, sum(calls) AS calls, sum(unpriced_calls) AS unpriced_calls, "
        "sum(total_tokens) AS total_tokens, sum(idle_tokens) AS idle_tokens, sum(outcomes) AS outcomes, "
        f"sum(successful_outcomes) AS successful_outcomes FROM value_metrics_daily WHERE {PERIOD_DAYS})")
    return Totals(*row)


def spend_by_team(w: Warehouse, hourly: bool) -> list[tuple[datetime, str, Decimal]]:
    """(hour or day, 'org / team', spend) from fct_calls: the repriced, exact cost of every call."""
    w.need("fct_calls")
    bucket = "toStartOfHour(occurred_at)" if hourly else "toStartOfDay(occurred_at)"
    return w.rows(
        f"SELECT {bucket} AS t, concat(org_id, ' / ', team) AS who, sum(cost_usd) AS cost "
        f"FROM fct_calls WHERE {period_at('occurred_at')} GROUP BY t, who ORDER BY t")


@dataclass(frozen=True)
class TeamApp:
    org: str
    team: str
    app: str
    outcome_type: str  # the type of most of its successful outcomes ('' when none)
    cost_usd: Decimal
    tokens: int
    unpriced_calls: int
    successful_outcomes: int
    cost_per_successful_outcome_usd: Decimal | None


def cost_per_outcome_by_team(w: Warehouse) -> list[TeamApp]:
    """Each team's spend on an app and the successful outcomes that app reported for the team."""
    w.need("value_metrics_daily")
    return [TeamApp(*row) for row in w.rows(
        "SELECT org_id, team, app, outcome_type, cost_usd, total_tokens, unpriced_calls, successful_outcomes, "
        f"{metric_sql('cost_per_successful_outcome_usd')} "
        "FROM (SELECT org_id, team, app, topKWeighted(1)(outcome_type, successful_outcomes)[1] AS outcome_type, "
        "sum(cost_usd) AS cost_usd, sum(total_tokens) AS total_tokens, sum(unpriced_calls) AS unpriced_calls, "
        f"sum(successful_outcomes) AS successful_outcomes FROM value_metrics_daily WHERE {PERIOD_DAYS} "
        "GROUP BY org_id, team, app) WHERE cost_usd > 0 OR unpriced_calls > 0")]


@dataclass(frozen=True)
class UserVolume:
    org: str
    team: str
    user: str
    app: str
    tokens: int
    cost_usd: Decimal
    successful_outcomes: int
    outcomes_per_million_tokens: float


def volume_by_user(w: Warehouse) -> list[UserVolume]:
    w.need("value_metrics_daily")
    return [UserVolume(*row) for row in w.rows(
        "SELECT org_id, team, user_id, app, total_tokens, cost_usd, successful_outcomes, "
        f"{metric_sql('outcomes_per_million_tokens')} "
        "FROM (SELECT org_id, team, user_id, app, sum(total_tokens) AS total_tokens, sum(cost_usd) AS cost_usd, "
        f"sum(successful_outcomes) AS successful_outcomes FROM value_metrics_daily WHERE {PERIOD_DAYS} "
        "GROUP BY org_id, team, user_id, app) WHERE total_tokens > 0")]


def flagged(w: Warehouse) -> list[tuple]:
    """Tokenmaxxing flags of the weeks that overlap the period: each entity's latest flagged week."""
    w.need("tokenmaxxing_signals")
    return w.rows(
        "SELECT entity_type, org_id, team, entity_id, app, week, count() OVER (PARTITION BY entity_type, "
        "org_id, team, entity_id, app) AS weeks, total_tokens, cost_usd, successful_outcomes, reasons, "
        "outcome_yield, peer_median_yield, peer_median_tokens, volume_z, yield_z, volume_growth, outcome_growth, "
        "peers FROM tokenmaxxing_signals "
        "WHERE is_flagged AND week >= toMonday(toDate({start:DateTime('UTC')})) "
        "AND week < toDate({end:DateTime('UTC')}) "
        "ORDER BY week DESC LIMIT 1 BY entity_type, org_id, team, entity_id, app")


def overkill(w: Warehouse) -> list[tuple]:
    w.need("model_overkill")
    return w.rows(
        "SELECT org_id, app, outcome_type, model, cheaper_model, estimated_saving_usd, success_rate, "
        "cheaper_success_rate, cost_per_successful_outcome_usd, cheaper_cost_per_successful_outcome_usd, "
        "sessions, arrayStringConcat(teams, ', ') "
        "FROM model_overkill WHERE is_overkill AND estimated_saving_usd > 0 ORDER BY estimated_saving_usd DESC")


def alerts(w: Warehouse) -> list[tuple] | None:
    """Each incident's latest notice in the period (None without the alerts table)."""
    if not w.has("alerts"):
        return None
    return w.rows(
        "SELECT incident_key, event, severity, title, summary, value, baseline, unit, opened_at, evaluated_at, "
        "query, count() OVER (PARTITION BY incident_key) AS notices FROM ("
        "  SELECT * FROM alerts WHERE " + period_at("evaluated_at")
        + "  ORDER BY evaluated_at DESC, created_at DESC) "
        "ORDER BY evaluated_at DESC, created_at DESC LIMIT 1 BY incident_key")
