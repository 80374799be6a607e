"""The rules over the dbt marts (built by `yieldmeter transform`): budget burn, cost per
outcome regression, tokenmaxxing. Registered in :data:`yieldmeter.alerts.registry.RULES` on import,
like the rollup rules; each is skipped (not failed) while its mart table does not exist.

The marts are rebuilt by dbt, not per call, so these rules judge the marts as last built:
a replay (`yieldmeter alerts --at T`) reads only mart rows up to T's week or day, and
budget_status measures at the dbt var ``as_of`` (default: the newest call).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from clickhouse_connect.driver.client import Client
from pydantic import Field, model_validator

from yieldmeter.alerts.model import Finding, Severity, evaluated_hour, format_value, sql_string, utc
from yieldmeter.alerts.registry import RuleParams, rule, settle, title
from yieldmeter.transform import metric_sql

if TYPE_CHECKING:
    from yieldmeter.alerts.config import AlertsConfig

MARTS = "build the dbt marts: `yieldmeter transform`"


def _dec(value: float | int | Decimal | None, places: str = "0.01") -> Decimal | None:
    """A mart's Float64 (z-scores, yields) as a Decimal for display; never used for money."""
    return None if value is None else Decimal(str(value)).quantize(Decimal(places))


def _text(value: float | int | Decimal | None, places: str = "0.01") -> str:
    number = _dec(value, places)
    return "n/a" if number is None else f"{number:,}"


# --- budget burn -----------------------------------------------------------------------------


class BudgetBurnParams(RuleParams):
    warn_share: Decimal = Field(Decimal("0.8"), gt=0, description="Warn when projected month-end spend exceeds this share of the budget ...")
    critical_share: Decimal = Field(Decimal("1"), gt=0, description="... critical above this share.")
    min_elapsed_share: Decimal = Field(
        Decimal("0.1"), ge=0, le=1, description="Do not project from less of the month than this (a straight line from day 1 is noise)."
    )

    @model_validator(mode="after")
    def _order(self) -> BudgetBurnParams:
        if self.warn_share > self.critical_share:
            raise ValueError(f"warn_share ({self.warn_share}) cannot exceed critical_share ({self.critical_share})")
        return self


BUDGET_SQL = """
SELECT org_id, team, month, budget_usd, month_to_date_usd, projected_month_end_usd, month_elapsed_share,
       as_of
FROM budget_status
WHERE month = toStartOfMonth({day:Date})
ORDER BY org_id, team
"""


@rule("budget_burn", BudgetBurnParams, tables=("budget_status",), remedy=MARTS)
def budget_burn(client: Client, config: AlertsConfig, now: datetime) -> list[Finding]:
    """Projected month-end spend of an org or team over a share of its budget (budget_status).

    One incident per budget (org, or org and team); warning over warn_share (80%), critical
    over critical_share (100%). The projection is the mart's: month-to-date spend scaled by the
    share of the month elapsed at the mart's as_of.
    """
    day = evaluated_hour(now, settle(config)).date()
    findings = []
    for org, team, month, budget, to_date, projected, elapsed, as_of in client.query(
        BUDGET_SQL, parameters={"day": day}
    ).result_rows:
        entity = {"org": org} if team == "*" else {"org": org, "team": team}
        params = config.params("budget_burn", org, "" if team == "*" else team)
        if not params.enabled or budget <= 0 or Decimal(str(elapsed)) < params.min_elapsed_share:
            continue
        projected, to_date = Decimal(projected), Decimal(to_date)
        threshold = params.warn_share * budget
        if projected <= threshold:
            continue
        scope = f"org {org}" if team == "*" else f"team {org} / {team}"
        findings.append(
            Finding(
                rule="budget_burn",
                entity=entity,
                severity=Severity.CRITICAL if projected > params.critical_share * budget else Severity.WARNING,
                title=title("Budget burn", entity),
                value=projected,
                baseline=Decimal(budget),
                threshold=threshold,
                unit="USD/month",
                observed_at=utc(datetime.combine(month, datetime.min.time())),
                summary=f"The {scope} is on course to spend *{format_value(projected, 'USD')}* in {month:%B %Y}, "
                f"*{projected / budget:.0%}* of its {format_value(Decimal(budget), 'USD')} budget "
                f"({format_value(to_date, 'USD')} spent so far).",
                details={
                    "Spent so far": format_value(to_date, "USD"),
                    "Month elapsed": f"{Decimal(str(elapsed)):.0%} (as of {utc(as_of):%Y-%m-%d %H:%M} UTC)",
                    "Budget": f"{format_value(Decimal(budget), 'USD')} a month",
                },
                query=(
                    "SELECT day, team, app, model, sum(cost_usd) AS cost_usd, sum(calls) AS calls\n"
                    f"FROM value_metrics_daily\nWHERE org_id = {sql_string(org)}"
                    + ("" if team == "*" else f" AND team = {sql_string(team)}")
                    + f"\n  AND day >= toDate('{month:%Y-%m-%d}')\n"
                    "GROUP BY day, team, app, model ORDER BY day, cost_usd DESC"
                ),
            )
        )
    return findings


# --- cost per outcome regression -------------------------------------------------------------


class CostPerOutcomeParams(RuleParams):
    ratio: Decimal = Field(Decimal("1.5"), ge=1, description="Fire when this week's cost per successful outcome exceeds ratio x last week's ...")
    critical_ratio: Decimal = Field(Decimal("3"), ge=1, description="... critical above this multiple.")
    min_successes: int = Field(10, ge=1, description="... given at least this many successful outcomes in each week ...")
    min_cost_usd: Decimal = Field(Decimal("5"), ge=0, description="... and at least this much spend this week (USD).")


COST_PER_OUTCOME_SQL = f"""
SELECT org_id, team, app, outcome_type, cost_now, wins_now, cost_before, wins_before,
       {metric_sql("cost_per_successful_outcome_usd", "cost_now", "wins_now", "unpriced_now")} AS value,
       {metric_sql("cost_per_successful_outcome_usd", "cost_before", "wins_before", "unpriced_before")} AS baseline
FROM (
    SELECT org_id, team, app, outcome_type,
           sumIf(cost_usd, day >= {{start:Date}}) AS cost_now, sumIf(successful_outcomes, day >= {{start:Date}}) AS wins_now,
           sumIf(unpriced_calls, day >= {{start:Date}}) AS unpriced_now,
           sumIf(cost_usd, day < {{start:Date}}) AS cost_before, sumIf(successful_outcomes, day < {{start:Date}}) AS wins_before,
           sumIf(unpriced_calls, day < {{start:Date}}) AS unpriced_before
    FROM value_metrics_daily
    WHERE day >= {{start:Date}} - 7 AND day < {{start:Date}} + 7 AND outcome_type != ''
    GROUP BY org_id, team, app, outcome_type
)
-- the marts' metric: unknown (NULL) without a success or while a call of the week is unpriced
WHERE value IS NOT NULL AND baseline IS NOT NULL
ORDER BY org_id, team, app, outcome_type
"""


@rule("cost_per_outcome_regression", CostPerOutcomeParams, tables=("value_metrics_daily",), remedy=MARTS)
def cost_per_outcome_regression(client: Client, config: AlertsConfig, now: datetime) -> list[Finding]:
    """Cost per successful outcome of a team's app this week far above the week before.

    Weeks are the last 7 complete days and the 7 before them (value_metrics_daily), per org,
    team, app and outcome type; the cost per successful outcome is the marts' own metric
    (dbt/macros/metrics.sql), unknown for a week with an unpriced call, so only fully priced
    weeks are compared.
    """
    end = evaluated_hour(now, settle(config)).date()  # the day of the last settled hour counts only once complete
    start = end - timedelta(days=7)
    findings = []
    for org, team, app, outcome, cost_now, wins_now, cost_before, wins_before, value, baseline in client.query(
        COST_PER_OUTCOME_SQL, parameters={"start": start}, settings={"prefer_column_name_to_alias": 1}
    ).result_rows:
        params = config.params("cost_per_outcome_regression", org, team)
        if not params.enabled or min(wins_now, wins_before) < params.min_successes or cost_now < params.min_cost_usd:
            continue
        threshold = params.ratio * baseline
        if value <= threshold:
            continue
        entity = {"org": org, "team": team, "app": app, "outcome": outcome}
        findings.append(
            Finding(
                rule="cost_per_outcome_regression",
                entity=entity,
                severity=Severity.CRITICAL if value > params.critical_ratio * baseline else Severity.WARNING,
                title=title("Cost per outcome up", entity),
                value=value,
                baseline=baseline,
                threshold=threshold,
                unit=f"USD/{outcome}",
                observed_at=utc(datetime.combine(start, datetime.min.time())),
                summary=f"Each successful `{outcome}` cost *{format_value(value, 'USD')}* in the 7 days from "
                f"{start:%Y-%m-%d}, against *{format_value(baseline, 'USD')}* the week before.",
                details={
                    "This week": f"{format_value(Decimal(cost_now), 'USD')} for {wins_now:,} successes",
                    "Week before": f"{format_value(Decimal(cost_before), 'USD')} for {wins_before:,} successes",
                },
                query=(
                    "SELECT day, model, sum(cost_usd) AS cost_usd, sum(successful_outcomes) AS successes,\n"
                    "       sum(total_tokens) AS tokens\n"
                    f"FROM value_metrics_daily\nWHERE org_id = {sql_string(org)} AND team = {sql_string(team)}"
                    f" AND app = {sql_string(app)}\n  AND outcome_type = {sql_string(outcome)}"
                    f" AND day >= toDate('{start - timedelta(days=7):%Y-%m-%d}') AND day < toDate('{end:%Y-%m-%d}')\n"
                    "GROUP BY day, model ORDER BY day, cost_usd DESC"
                ),
            )
        )
    return findings


# --- tokenmaxxing ----------------------------------------------------------------------------

EntityType = Literal["user", "team", "app"]

TOKENMAXXING_SQL = """
SELECT entity_type, org_id, team, entity_id, app,
       argMax(tuple(week, outcome_type, total_tokens, cost_usd, successful_outcomes, outcome_yield, peers,
                    peer_median_tokens, peer_median_yield, volume_z, yield_z, expected_successful_outcomes,
                    shortfall_z, volume_growth, outcome_growth, reasons),
              (week, total_tokens)) AS latest,
       groupArray(week) AS flagged_weeks
FROM tokenmaxxing_signals
WHERE is_flagged AND week > {since:Date} AND week <= {week:Date}
  AND entity_type IN {types:Array(String)}
GROUP BY entity_type, org_id, team, entity_id, app
ORDER BY entity_type, org_id, team, entity_id, app
"""


def flag_window(day: date, weeks: int) -> tuple[date, date]:
    """The weeks a tokenmaxxing flag counts in (tokenmaxxing_signals' `week`: the Monday it starts
    on), written once for the SQL and the rule: after the first date, up to the second: the week of
    ``day`` and the ``weeks - 1`` before it."""
    monday = day - timedelta(days=day.weekday())
    return monday - timedelta(weeks=weeks), monday


class TokenmaxxingParams(RuleParams):
    entity_types: tuple[EntityType, ...] = Field(("user", "team", "app"), description="Which flagged entities to alert on.")
    weeks: int = Field(2, ge=1, le=8, description="A flag in the current week or the previous weeks up to this many counts.")
    critical_weeks: int = Field(2, ge=1, le=8, description="Critical when flagged in this many of those weeks.")
    min_cost_usd: Decimal = Field(Decimal("0"), ge=0, description="Ignore flagged entities that spent less than this in the flagged week.")
    cooldown_minutes: int = Field(10080, ge=0, description="A weekly signal: repeat an open incident once a week.")

    @model_validator(mode="after")
    def _weeks(self) -> TokenmaxxingParams:
        if self.critical_weeks > self.weeks:
            raise ValueError(f"critical_weeks ({self.critical_weeks}) cannot exceed weeks ({self.weeks})")
        return self


def _tokenmaxxing_entity(entity_type: str, org: str, team: str, entity_id: str, app: str) -> dict[str, str]:
    if entity_type == "user":
        return {"org": org, "team": team, "app": app, "user": entity_id}
    if entity_type == "team":
        return {"org": org, "team": team, "app": app}
    return {"org": org, "app": app}


@rule("tokenmaxxing", TokenmaxxingParams, tables=("tokenmaxxing_signals",), remedy=MARTS)
def tokenmaxxing(client: Client, config: AlertsConfig, now: datetime) -> list[Finding]:
    """A user, team or app flagged by tokenmaxxing_signals: tokens high or rising against
    peers while outcome yield is low. One incident per flagged entity, with the evidence of
    its latest flagged week (volume and yield against the peer medians, z-scores, growth)."""
    day = evaluated_hour(now, settle(config)).date()
    variants = [p for p in config.variants("tokenmaxxing") if p.enabled]
    if not variants:
        return []
    types = sorted({t for p in variants for t in p.entity_types})
    since, week = flag_window(day, max(p.weeks for p in variants))
    rows = client.query(TOKENMAXXING_SQL, parameters={"since": since, "week": week, "types": types}).result_rows
    findings = []
    for entity_type, org, team, entity_id, app, latest, flagged_weeks in rows:
        (week, outcome, tokens, cost, wins, yield_, peers, peer_tokens, peer_yield, volume_z, yield_z, expected,
         shortfall_z, volume_growth, outcome_growth, reasons) = latest
        params = config.params("tokenmaxxing", org, team)
        if not params.enabled or entity_type not in params.entity_types or Decimal(cost) < params.min_cost_usd:
            continue
        # the SQL looked back over the widest window; count the weeks within this entity's own
        since, _ = flag_window(day, params.weeks)
        weeks_flagged = sum(1 for w in flagged_weeks if w > since)
        if weeks_flagged == 0:
            continue
        entity = _tokenmaxxing_entity(entity_type, org, team, entity_id, app)
        label = {"user": f"user {entity_id}", "team": f"team {team}", "app": f"{org}'s app"}[entity_type]
        tokens, peer_tokens = Decimal(tokens), _dec(peer_tokens, "1")
        findings.append(
            Finding(
                rule="tokenmaxxing",
                entity=entity,
                severity=Severity.CRITICAL if weeks_flagged >= params.critical_weeks else Severity.WARNING,
                title=title("Tokenmaxxing", entity),
                value=tokens,
                baseline=peer_tokens,  # the peers' median volume that week
                threshold=peer_tokens,  # a flag needs volume at or above the peer median
                unit="tokens/week",
                observed_at=utc(datetime.combine(week, datetime.min.time())),
                summary=f"The {label} on `{app}` used *{tokens:,}* tokens in the week of {week:%Y-%m-%d} "
                f"(peer median {peer_tokens:,}) for *{wins}* successful `{outcome}` "
                f"(peers' yield predicts {_text(expected, '0.1')}): {', '.join(reasons)}.",
                details={
                    "Yield (successes per M tokens)": f"{_text(yield_, '0.001')} vs peer median {_text(peer_yield, '0.001')}",
                    "Volume z / yield z": f"{_text(volume_z)} / {_text(yield_z)} (robust, log scale, {peers} peers)",
                    "Shortfall z": _text(shortfall_z),
                    "Growth week over week": f"tokens x{_text(volume_growth)}, successes x{_text(outcome_growth)}",
                    "Cost that week": format_value(Decimal(cost), "USD"),
                    "Weeks flagged": f"{weeks_flagged} of the last {params.weeks}",
                },
                query=(
                    "SELECT week, outcome_type, total_tokens, successful_outcomes, outcome_yield, peers,\n"
                    "       peer_median_tokens, peer_median_yield, volume_z, yield_z, shortfall_z, reasons\n"
                    f"FROM tokenmaxxing_signals\nWHERE entity_type = {sql_string(entity_type)}"
                    f" AND org_id = {sql_string(org)} AND entity_id = {sql_string(entity_id)}"
                    f" AND app = {sql_string(app)}\nORDER BY week"
                ),
            )
        )
    return findings
