"""The HTML report: one self-contained file a FinOps analyst can open, mail or archive.

    write_report(client, Path("report.html"))            # what `yieldmeter report` and the demo call

What it shows, for a period (the last ``days`` up to ``now``; ``now`` defaults to the newest
hour in the warehouse, as dbt's ``as_of`` does, so a replayed or simulated week reads as if it
were now): headline numbers, spend over time, cost per successful outcome by team, value
versus volume per user with the tokenmaxxing flags, model overkill savings and the top alerts.

Charts are inline SVG drawn here, not a charting library: the file stays a few tens of KB
(plotly's embedded JS alone is ~4.6 MB), needs no JavaScript to display (it prints, it opens
in a mail client or a locked-down browser, and the DOM holds the charts as they are drawn),
and adds no dependency. Each chart is a handful of shapes (areas, bars, points), so the
drawing code stays small.

Sources: the raw warehouse tables where they are enough (spend from ``calls_hourly``,
outcomes from ``outcomes``, alerts from ``alerts``), the dbt marts where the numbers need
sessions and attribution (idle tokens, tokenmaxxing flags, model overkill). A section whose
mart is missing says so and how to build it (``yieldmeter transform``) instead of failing.
Money is Decimal from the query to the text; floats appear only as chart coordinates.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from html import escape
from pathlib import Path

from clickhouse_connect.driver.client import Client
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from yieldmeter.alerts.model import format_value
from yieldmeter.errors import YieldmeterError

TEMPLATE = "report_template.html"
NOT_BUILT = "not available: run `yieldmeter transform`"
DEFAULT_DAYS = 30
TOP_TEAMS = 15  # bars in the cost-per-outcome chart; the rest are summed in a note
TOP_ALERTS = 10
SERIES = 7  # stacked teams in the spend chart; the rest become "other teams"

# Colour-blind-safe categorical palette (Okabe-Ito, plus two greys for "other").
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999", "#666666")
FLAG = "#C0392B"  # tokenmaxxing flags and "no outcome" warnings


# --- what the template renders ----------------------------------------------------------------


@dataclass
class Headline:
    label: str
    value: str
    hint: str = ""


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str | Markup]]
    numeric: set[int] = field(default_factory=set)  # right-aligned columns
    nowrap: set[int] = field(default_factory=set)  # columns kept on one line (badges)


@dataclass
class Section:
    id: str
    title: str
    explain: str  # one line: what the section shows
    action: str  # one line: how to act on it
    chart: Markup | None = None
    legend: list[tuple[str, str]] = field(default_factory=list)  # (colour, label)
    table: Table | None = None
    notes: list[str] = field(default_factory=list)
    missing: str | None = None  # why the section has nothing to show


@dataclass
class Report:
    title: str
    start: datetime
    end: datetime
    generated_at: datetime
    headlines: list[Headline]
    sections: list[Section]
    warnings: list[str] = field(default_factory=list)

    @property
    def needs_transform(self) -> bool:
        """Some section or number waits for the dbt marts."""
        texts = [h.hint for h in self.headlines] + [t for s in self.sections for t in (s.missing or "", *s.notes)]
        return any("`yieldmeter transform`" in text for text in texts)

    @property
    def period(self) -> str:
        days = (self.end - self.start) / timedelta(days=1)
        span = f"{days:.0f} days" if days >= 2 else f"{days * 24:.0f} hours"
        return f"{self.start:%Y-%m-%d %H:%M} – {self.end:%Y-%m-%d %H:%M} UTC ({span})"


# --- numbers for people ----------------------------------------------------------------------


def usd(value: Decimal | None) -> str:
    """Dollars: "$1,234.56"; cents-scale amounts keep four places ("$0.0421")."""
    if value is None:
        return "—"
    places = Decimal("0.0001") if 0 < abs(value) < 1 else Decimal("0.01")
    return f"${value.quantize(places, ROUND_HALF_UP):,}"


def usd_short(value: float) -> str:
    """Axis labels: "$0", "$350", "$1.2k", "$3.4M" (coordinates are floats already)."""
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"${value / limit:.3g}{suffix}"
    return f"${value:.3g}" if value < 1 else f"${value:,.0f}"


def count(value: int | float) -> str:
    """Counts: "1,234"; large ones short: "12.3M"."""
    for limit, suffix in ((1e9, "B"), (1e6, "M")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:,.0f}"


def share(part: int | Decimal, whole: int | Decimal) -> str:
    if not whole:
        return "—"
    return f"{Decimal(part) * 100 / Decimal(whole):.1f}%"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


class ReportError(YieldmeterError):
    """The report cannot be written; the message says what to do."""


# --- the warehouse ---------------------------------------------------------------------------


class Warehouse:
    """The queries of the report, with the period as parameters and the tables that exist."""

    def __init__(self, client: Client, start: datetime, end: datetime):
        self.client, self.start, self.end = client, start, end
        self.tables = {row[0] for row in client.query(
            "SELECT name FROM system.tables WHERE database = currentDatabase()").result_rows}

    def rows(self, sql: str, **parameters) -> list[tuple]:
        parameters = {"start": self.start, "end": self.end} | parameters
        return self.client.query(sql, parameters=parameters).result_rows

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


# The columns the report reads from each dbt mart (dbt/models/marts/value/*.sql).
MART_COLUMNS = {
    "value_metrics_daily": {"day", "idle_tokens", "total_tokens"},
    "tokenmaxxing_signals": {
        "week", "entity_type", "org_id", "team", "entity_id", "app", "total_tokens", "cost_usd",
        "successful_outcomes", "reasons", "outcome_yield", "peer_median_yield", "peer_median_tokens", "volume_z",
        "yield_z", "volume_growth", "outcome_growth", "peers", "is_flagged"},
    "model_overkill": {
        "org_id", "app", "outcome_type", "model", "cheaper_model", "estimated_saving_usd", "success_rate",
        "cheaper_success_rate", "cost_per_successful_outcome_usd", "cheaper_cost_per_successful_outcome_usd",
        "sessions", "teams", "is_overkill"},
}


PERIOD_HOURS = "hour >= {start:DateTime('UTC')} AND hour < {end:DateTime('UTC')}"


def period_at(column: str) -> str:
    """The period as a filter on a DateTime64 column."""
    return (f"{column} >= toDateTime64({{start:DateTime('UTC')}}, 3, 'UTC') "
            f"AND {column} < toDateTime64({{end:DateTime('UTC')}}, 3, 'UTC')")


PERIOD_DAYS = "day >= toDate({start:DateTime('UTC')}) AND day < toDate({end:DateTime('UTC')} - INTERVAL 1 SECOND) + 1"


def period(client: Client, now: datetime | None, days: int) -> tuple[datetime, datetime]:
    """[start, end): ``days`` back from ``now`` (default: the end of the newest hour with calls),
    starting no earlier than the first hour with calls, so a short history is not drawn as empty days."""
    tables = {row[0] for row in client.query("SHOW TABLES").result_rows}
    if "calls_hourly" not in tables:
        raise ReportError("The warehouse has no calls_hourly table: run `yieldmeter migrate` first.")
    first, last, rows = client.query("SELECT min(hour), max(hour), count() FROM calls_hourly").result_rows[0]
    if now is None:
        end = _utc(last) + timedelta(hours=1) if rows else datetime.now(timezone.utc)
    else:
        end = _utc(now)
    start = end - timedelta(days=days)
    if rows and start < _utc(first) < end:
        start = _utc(first)
    return start, end


# --- headline ----------------------------------------------------------------------------------


def headlines(w: Warehouse) -> tuple[list[Headline], list[str]]:
    cost, calls, tokens, unpriced = w.rows(
        f"SELECT sum(cost_usd), sum(calls), sum(input_tokens + output_tokens), sum(unpriced_calls) "
        f"FROM calls_hourly WHERE {PERIOD_HOURS}")[0]
    successes, outcomes = w.rows(
        "SELECT countIf(success), count() FROM outcomes FINAL WHERE " + period_at("occurred_at"))[0] \
        if w.has("outcomes") else (0, 0)
    cost = Decimal(cost)
    per_success = cost / successes if successes else None
    warnings = []
    if unpriced:
        warnings.append(f"{unpriced:,} of {calls:,} calls ({share(unpriced, calls)}) have no known price: "
                        "their cost is missing from every number here. Add their prices (`yieldmeter prices`).")
    idle_missing = w.mart("value_metrics_daily")
    if idle_missing is None:
        idle, total = w.rows(f"SELECT sum(idle_tokens), sum(total_tokens) FROM value_metrics_daily "
                             f"WHERE {PERIOD_DAYS}")[0]
        idle_value, idle_hint = share(idle, total), f"{count(idle)} tokens in sessions that produced no outcome"
    else:
        idle_value, idle_hint = "—", idle_missing
    return [
        Headline("Total spend", usd(cost), f"after negotiated discounts; {count(tokens)} tokens"),
        Headline("Calls", count(calls), f"{unpriced:,} unpriced" if unpriced else "all priced"),
        Headline("Successful outcomes", count(successes), f"of {count(outcomes)} reported outcomes"),
        Headline("Cost per successful outcome", usd(per_success), "total spend ÷ successful outcomes"),
        Headline("Idle-token share", idle_value, idle_hint),
    ], warnings


# --- spend over time -----------------------------------------------------------------------------


def spend_section(w: Warehouse) -> Section:
    section = Section(
        "spend", "Spend over time",
        "What the tokens cost per hour (per day for periods over two weeks), stacked by team.",
        "A step up that stays is a new workload or a model change; a narrow spike is usually a loop "
        "or a batch job: find its team here, then its model and user in the top alerts.")
    hourly = (w.end - w.start) <= timedelta(days=14)
    bucket = "hour" if hourly else "toStartOfDay(hour)"
    rows = w.rows(
        f"SELECT {bucket} AS t, concat(org_id, ' / ', team) AS who, sum(cost_usd) AS cost "
        f"FROM calls_hourly WHERE {PERIOD_HOURS} GROUP BY t, who ORDER BY t")
    if not rows:
        section.missing = "No calls in this period."
        return section
    totals: dict[str, Decimal] = {}
    for _, who, cost in rows:
        totals[who] = totals.get(who, Decimal(0)) + cost
    ranked = sorted(totals, key=totals.get, reverse=True)
    named = ranked[: SERIES - 1] if len(ranked) > SERIES else ranked
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    t = w.start.replace(minute=0, second=0, microsecond=0) if hourly else w.start.replace(hour=0, minute=0, second=0,
                                                                                          microsecond=0)
    times = []
    while t < w.end:
        times.append(t)
        t += step
    index = {t: i for i, t in enumerate(times)}
    labels = named + (["other teams"] if len(ranked) > len(named) else [])
    values = {label: [Decimal(0)] * len(times) for label in labels}
    for t, who, cost in rows:
        label = who if who in named else "other teams"
        values[label][index[_utc(t)]] += cost
    colours = {label: PALETTE[i] if label != "other teams" else PALETTE[-2] for i, label in enumerate(labels)}
    section.chart = Markup(stacked_area(times, [(l, values[l], colours[l]) for l in labels], hourly))
    section.legend = [(colours[l], f"{l} — {usd(sum(values[l]))}") for l in labels]
    per_bucket = [sum(values[l][i] for l in labels) for i in range(len(times))]
    peak = max(range(len(times)), key=per_bucket.__getitem__)
    typical = sorted(per_bucket)[len(per_bucket) // 2]
    unit = "hour" if hourly else "day"
    section.notes.append(
        f"Peak {unit}: {times[peak]:%a %Y-%m-%d %H:%M} UTC, {usd(per_bucket[peak])} "
        f"(the median {unit} cost {usd(typical)}).")
    return section


# --- cost per outcome by team ------------------------------------------------------------------


def cost_per_outcome_section(w: Warehouse) -> Section:
    section = Section(
        "cost-per-outcome", "Cost per successful outcome by team",
        "Each team's spend on an app divided by the successful outcomes that app reported for the team "
        "(resolved tickets, merged PRs, qualified leads …).",
        "Compare teams on the same app: the dearest ones pay more per result for the same work — look at "
        "their models and prompt sizes; red rows spent money and produced no successful outcome at all.")
    spend = w.rows(
        f"SELECT org_id, team, app, sum(cost_usd) AS cost, sum(input_tokens + output_tokens) "
        f"FROM calls_hourly WHERE {PERIOD_HOURS} GROUP BY org_id, team, app")
    wins = {}
    if w.has("outcomes"):
        wins = {(o, t, a): (s, typ) for o, t, a, s, typ in w.rows(
            "SELECT org_id, team, app, countIf(success), topK(1)(outcome_type)[1] FROM outcomes FINAL "
            "WHERE " + period_at("occurred_at") + " GROUP BY org_id, team, app")}
    rows = []
    for org, team, app, cost, tokens in spend:
        successes, kind = wins.get((org, team, app), (0, ""))
        if cost > 0:
            rows.append((f"{org} / {team} · {app}", cost, successes, kind, tokens))
    if not rows:
        section.missing = "No priced spend in this period."
        return section
    rows.sort(key=lambda r: r[1], reverse=True)  # the biggest budgets first decide what to show
    shown, rest = rows[:TOP_TEAMS], rows[TOP_TEAMS:]
    shown.sort(key=lambda r: (r[2] > 0, -(r[1] / r[2]) if r[2] else 0))  # no outcome first, then dearest
    bars = [(label, cost / successes if successes else None,
             f"{usd(cost / successes)} per {kind or 'outcome'}" if successes
             else f"no successful outcome — {usd(cost)} spent",
             f"{label}: {usd(cost)} spent, {successes:,} successful outcomes, {count(tokens)} tokens")
            for label, cost, successes, kind, tokens in shown]
    section.chart = Markup(hbars(bars, PALETTE[0]))
    section.table = Table(
        ["team · app", "spend", "successful outcomes", "cost per successful outcome"],
        [[label, usd(cost), f"{successes:,}", usd(cost / successes) if successes else "no outcome"]
         for label, cost, successes, _, _ in shown], numeric={1, 2, 3})
    if rest:
        section.notes.append(f"{len(rest)} smaller team/app pairs ({usd(sum(r[1] for r in rest))} together) "
                             "are left out of the chart.")
    return section


# --- value versus volume ---------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    """One entity the tokenmaxxing mart flagged, in its latest flagged week of the period."""

    entity_type: str  # user | team | app
    org: str
    team: str
    entity: str  # the user id, team or app
    app: str
    week: datetime
    weeks: int  # weeks of the period it was flagged in
    tokens: int
    cost: Decimal
    successes: int
    evidence: list[str]  # lines: the reasons, then the numbers behind each

    @property
    def name(self) -> str:
        who = {"user": f"{self.org} / {self.team} / {self.entity}", "team": f"{self.org} / {self.team}"}
        return f"{who.get(self.entity_type, self.org)} · {self.app}"


def _flags(w: Warehouse) -> list[Flag]:
    """Flagged entities of the weeks that overlap the period, with the numbers that flagged them."""
    rows = w.rows(
        "SELECT entity_type, org_id, team, entity_id, app, week, count() OVER (PARTITION BY entity_type, "
        "org_id, team, entity_id, app) AS weeks, total_tokens, cost_usd, successful_outcomes, reasons, "
        "outcome_yield, peer_median_yield, peer_median_tokens, volume_z, yield_z, volume_growth, outcome_growth, "
        "peers FROM tokenmaxxing_signals "
        "WHERE is_flagged AND week >= toMonday(toDate({start:DateTime('UTC')})) "
        "AND week < toDate({end:DateTime('UTC')}) "
        "ORDER BY week DESC LIMIT 1 BY entity_type, org_id, team, entity_id, app")
    flags = []
    for (kind, org, team, entity, app, week, weeks, tokens, cost, successes, reasons, yield_, peer_yield,
         peer_tokens, volume_z, yield_z, volume_growth, outcome_growth, peers) in rows:
        lines = [f"{', '.join(r.replace('_', ' ') for r in reasons)} — week of {week:%Y-%m-%d}, {peers} peers",
                 f"tokens: {count(tokens)} against a peer median of {count(peer_tokens)}"
                 + (f" (robust z {volume_z:+.1f})" if volume_z is not None else ""),
                 f"yield: {yield_:.2f} successes per million tokens against {peer_yield:.2f}"
                 + (f" (robust z {yield_z:+.1f})" if yield_z is not None else "")]
        if volume_growth is not None and "volume_outpaces_outcomes" in reasons:
            lines.append(f"growth: tokens ×{volume_growth:.1f}, successes ×{outcome_growth:.1f} on the week before")
        flags.append(Flag(kind, org, team, entity, app, week, weeks, tokens, cost, successes, lines))
    order = {"user": 0, "team": 1, "app": 2}
    return sorted(flags, key=lambda f: (order.get(f.entity_type, 3), -f.tokens))


def value_volume_section(w: Warehouse) -> Section:
    section = Section(
        "value-volume", "Value versus volume",
        "Every user of every app: tokens used (across) against successful outcomes per million tokens "
        "(up). Flagged users use many tokens against their peers and get few results for them.",
        "Talk to the teams of the flagged users before the budget does: the evidence column says against "
        "which peer baseline they were flagged. Heavy users high on the chart are doing well, not maxxing.")
    volume = w.rows(
        f"SELECT org_id, team, user_id, app, sum(input_tokens + output_tokens) AS tokens, sum(cost_usd) "
        f"FROM calls_hourly WHERE {PERIOD_HOURS} GROUP BY org_id, team, user_id, app HAVING tokens > 0")
    if not volume:
        section.missing = "No calls in this period."
        return section
    wins = {}
    if w.has("outcomes"):
        wins = {tuple(r[:4]): r[4] for r in w.rows(
            "SELECT org_id, team, user_id, app, countIf(success) FROM outcomes FINAL WHERE "
            + period_at("occurred_at") + " GROUP BY org_id, team, user_id, app")}
    flags_missing = w.mart("tokenmaxxing_signals")
    flags = _flags(w) if flags_missing is None else None
    flagged_users = {(f.org, f.team, f.entity, f.app) for f in flags or [] if f.entity_type == "user"}
    apps = sorted({r[3] for r in volume})
    colours = {app: PALETTE[i % (len(PALETTE) - 2)] for i, app in enumerate(apps)}
    points = []
    for org, team, user, app, tokens, cost in volume:
        key = (org, team, user, app)
        successes = wins.get(key, 0)
        rate = successes * 1e6 / tokens
        tip = (f"{org} / {team} / {user} · {app}: {count(tokens)} tokens, {usd(cost)}, "
               f"{successes:,} successful outcomes ({rate:.2f} per million tokens)")
        points.append(Point(float(tokens), rate, colours[app], tip, user if key in flagged_users else None))
    section.chart = Markup(scatter(points, x_label="tokens used (log scale)",
                                   y_label="successful outcomes per million tokens (log scale)"))
    section.legend = [(colours[a], a) for a in apps] + [(FLAG, "flagged as tokenmaxxing")]
    if flags is None:
        section.notes.append(f"Tokenmaxxing flags {flags_missing}.")
    elif not flags:
        section.notes.append("No user, team or app is flagged as tokenmaxxing in this period.")
    else:
        section.table = Table(
            ["flagged", "tokens", "spend", "successful outcomes", "evidence (latest flagged week)"],
            [[Markup(f"<strong>{escape(f.name)}</strong><br>{escape(f.entity_type)}, flagged "
                     f"{f.weeks} week{'s' if f.weeks > 1 else ''}"),
              count(f.tokens), usd(f.cost), f"{f.successes:,}",
              Markup(f"<strong>{escape(f.evidence[0])}</strong><br>") + Markup("<br>").join(f.evidence[1:])]
             for f in flags[:TOP_ALERTS]],
            numeric={1, 2, 3})
        if len(flags) > TOP_ALERTS:
            section.notes.append(f"{len(flags) - TOP_ALERTS} more flagged entities are in tokenmaxxing_signals.")
    return section


# --- model overkill -----------------------------------------------------------------------------


def overkill_section(w: Warehouse) -> Section:
    section = Section(
        "overkill", "Model overkill: what a cheaper model would save",
        "Apps where a dearer model does work that a cheaper model, on the same app and outcome type, "
        "completes about as often; the saving is what the same successful outcomes would have cost on it.",
        "Route these apps (or their easy requests) to the cheaper model and watch the success rate for a "
        "week; the biggest bars are the quickest wins.")
    section.missing = w.mart("model_overkill")
    if section.missing:
        return section
    rows = w.rows(
        "SELECT org_id, app, outcome_type, model, cheaper_model, estimated_saving_usd, success_rate, "
        "cheaper_success_rate, cost_per_successful_outcome_usd, cheaper_cost_per_successful_outcome_usd, "
        "sessions, arrayStringConcat(teams, ', ') "
        "FROM model_overkill WHERE is_overkill AND estimated_saving_usd > 0 ORDER BY estimated_saving_usd DESC")
    if not rows:
        section.missing = "No model overkill found: no cheaper model succeeds as often on the same work."
        return section
    total = sum((r[5] for r in rows), Decimal(0))
    bars = [(f"{org} · {app} on {model}", saving, f"save {usd(saving)} on {cheaper}",
             f"{org} · {app} ({kind}): {model} costs {usd(cpo)} per success at {float(rate):.0%}; "
             f"{cheaper} costs {usd(cheaper_cpo)} at {float(cheaper_rate):.0%}")
            for org, app, kind, model, cheaper, saving, rate, cheaper_rate, cpo, cheaper_cpo, _, _ in rows[:TOP_TEAMS]]
    section.chart = Markup(hbars(bars, PALETTE[2]))
    section.table = Table(
        ["org · app (outcome)", "model → cheaper model", "success rate", "cost per success", "teams", "saving"],
        [[f"{org} · {app} ({kind})", f"{model} → {cheaper}", f"{float(rate):.0%} → {float(cheaper_rate):.0%}",
          f"{usd(cpo)} → {usd(cheaper_cpo)}", teams, usd(saving)]
         for org, app, kind, model, cheaper, saving, rate, cheaper_rate, cpo, cheaper_cpo, _, teams
         in rows[:TOP_TEAMS]],
        numeric={5})
    section.notes.append(f"Estimated saving over all sessions in the warehouse: {usd(total)} "
                         "(the mart compares models over the whole history, not only this period).")
    return section


# --- alerts ----------------------------------------------------------------------------------------

SEVERITY_RANK = {"critical": 0, "warning": 1}


def _mrkdwn(text: str) -> Markup:
    """The alert summaries are Slack mrkdwn: *bold* and `code`; escaped first."""
    html = escape(text)
    html = re.sub(r"\*([^*]+)\*", r"<strong>\1</strong>", html)
    html = re.sub(r"`([^`]+)`", r"<code>\1</code>", html)
    return Markup(html)


def alerts_section(w: Warehouse) -> Section:
    section = Section(
        "alerts", "Top alerts",
        "The incidents the alert rules raised in this period, open ones first, then by severity: each "
        "incident's latest state, as sent to Slack.",
        "Open incidents need an owner; expand an alert's query and run it with `yieldmeter sql` to see "
        "which model and user are behind it.")
    if not w.has("alerts"):
        section.missing = "No alerts table: run `yieldmeter migrate`."
        return section
    rows = w.rows(
        "SELECT incident_key, event, severity, title, summary, value, baseline, unit, opened_at, evaluated_at, "
        "query, count() OVER (PARTITION BY incident_key) AS notices FROM ("
        "  SELECT * FROM alerts WHERE " + period_at("evaluated_at")
        + "  ORDER BY evaluated_at DESC, created_at DESC) "
        "ORDER BY evaluated_at DESC, created_at DESC LIMIT 1 BY incident_key")
    if not rows:
        section.missing = "No alert fired in this period."
        return section
    rows.sort(key=lambda r: (r[1] == "resolved", SEVERITY_RANK.get(r[2], 2), -_utc(r[9]).timestamp()))
    open_count = sum(r[1] != "resolved" for r in rows)
    table_rows = []
    for _, event, severity, title, summary, value, baseline, unit, opened, _, query, notices in rows[:TOP_ALERTS]:
        state = "resolved" if event == "resolved" else "open"
        table_rows.append([
            Markup(f'<span class="badge {escape(severity)}">{escape(severity)}</span>'
                   f'<span class="badge {state}">{state}</span>'),
            Markup(f"<strong>{escape(title)}</strong><br>{_mrkdwn(summary)}"
                   f'<details><summary>query</summary><pre>{escape(query)}</pre></details>'),
            f"{format_value(value, unit)} vs {format_value(baseline, unit)}",
            f"{_utc(opened):%a %m-%d %H:%M}",
            f"{notices}",
        ])
    section.table = Table(["", "incident", "value vs baseline", "opened (UTC)", "notices"], table_rows,
                          numeric={2, 4}, nowrap={0})
    section.notes.append(f"{len(rows)} incident(s) in this period, {open_count} still open"
                         + (f"; the {TOP_ALERTS} most pressing are shown." if len(rows) > TOP_ALERTS else "."))
    return section


# --- the report ----------------------------------------------------------------------------------


def build_report(client: Client, *, now: datetime | None = None, days: int = DEFAULT_DAYS) -> Report:
    """Query the warehouse and assemble the report (no file written)."""
    if days < 1:
        raise ReportError(f"days must be at least 1 (got {days}).")
    start, end = period(client, now, days)
    w = Warehouse(client, start, end)
    heads, warnings = headlines(w)
    sections = [spend_section(w), cost_per_outcome_section(w), value_volume_section(w),
                overkill_section(w), alerts_section(w)]
    return Report("yieldmeter — LLM spend against outcomes", start, end, datetime.now(timezone.utc),
                  heads, sections, warnings)


def render(report: Report) -> str:
    env = Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["ticks"] = lambda text: Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))
    return env.get_template(TEMPLATE).render(report=report)


def save(report: Report, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(report), encoding="utf-8")
    return path


def write_report(client: Client, path: Path | str, *, now: datetime | None = None,
                 days: int = DEFAULT_DAYS) -> Path:
    """Write the report for the ``days`` up to ``now`` (default: the newest data) to ``path``; return it."""
    return save(build_report(client, now=now, days=days), path)


# --- SVG charts --------------------------------------------------------------------------------
# Each function returns one <svg> with a viewBox, so it scales to the page width. Shapes carry
# a <title>: the browser shows the exact numbers on hover, without JavaScript.

WIDTH = 1000


def _f(x: float) -> str:
    return f"{x:.1f}"


def nice_ticks(high: float, n: int = 5) -> list[float]:
    """0 and round steps (1, 2, 2.5, 5 × 10^k) up to at least ``high``."""
    if high <= 0:
        return [0.0, 1.0]
    raw = high / n
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(int(math.ceil(high / step - 1e-9)) + 1)]


def stacked_area(times: list[datetime], series: list[tuple[str, list[Decimal], str]], hourly: bool) -> str:
    left, right, top, bottom, height = 64, 12, 12, 34, 300
    pw, ph = WIDTH - left - right, height - top - bottom
    n = len(times)
    stacks, base = [], [0.0] * n
    for label, values, colour in series:
        upper = [b + float(v) for b, v in zip(base, values)]
        stacks.append((label, values, colour, base, upper))
        base = upper
    ticks = nice_ticks(max(base) if base else 0)
    y_max = ticks[-1]

    def x(i: float) -> float:
        return left + (pw * i / (n - 1) if n > 1 else pw / 2)

    def y(v: float) -> float:
        return top + ph - ph * v / y_max

    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="spend over time">']
    for tick in ticks:
        out.append(f'<line class="grid" x1="{left}" x2="{WIDTH - right}" y1="{_f(y(tick))}" y2="{_f(y(tick))}"/>'
                   f'<text class="axis" x="{left - 6}" y="{_f(y(tick) + 4)}" text-anchor="end">'
                   f"{usd_short(tick)}</text>")
    # x labels: each midnight (hourly) or about eight dates (daily)
    every = max(1, n // 8)
    for i, t in enumerate(times):
        if (hourly and t.hour == 0) or (not hourly and i % every == 0):
            out.append(f'<line class="grid" x1="{_f(x(i))}" x2="{_f(x(i))}" y1="{top}" y2="{top + ph}"/>'
                       f'<text class="axis" x="{_f(x(i))}" y="{height - 12}" text-anchor="middle">'
                       f'{t:%a %d %b}</text>')
    for label, values, colour, lower, upper in stacks:
        points = [f"{_f(x(i))},{_f(y(upper[i]))}" for i in range(n)]
        points += [f"{_f(x(i))},{_f(y(lower[i]))}" for i in reversed(range(n))]
        total = sum(values, Decimal(0))
        out.append(f'<path class="area" d="M{" L".join(points)} Z" fill="{colour}">'
                   f"<title>{escape(label)}: {usd(total)} in the period</title></path>")
    out.append(f'<line class="axis-line" x1="{left}" x2="{WIDTH - right}" y1="{top + ph}" y2="{top + ph}"/>')
    out.append("</svg>")
    return "".join(out)


def hbars(bars: list[tuple[str, Decimal | None, str, str]], colour: str) -> str:
    """Horizontal bars: (label, value or None for "no outcome", text after the bar, tooltip)."""
    row, top, char = 26, 6, 6.9  # char: the average width of a 12px character
    label_w = min(420, max(120, int(max(len(b[0]) for b in bars) * char) + 24))
    text_w = min(380, max(120, int(max(len(b[2]) for b in bars) * char) + 16))
    height = top * 2 + row * len(bars)
    pw = WIDTH - label_w - text_w
    high = max((float(v) for _, v, _, _ in bars if v is not None), default=1.0) or 1.0
    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="bar chart">',
           '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
           f'patternTransform="rotate(45)"><rect width="3" height="6" fill="{FLAG}" opacity="0.55"/>'
           "</pattern></defs>"]
    for i, (label, value, text, tip) in enumerate(bars):
        y0 = top + i * row
        fits = int((label_w - 12) / char)
        short = label if len(label) <= fits else label[: fits - 1] + "…"
        out.append(f'<g><title>{escape(tip)}</title>'
                   f'<text class="label" x="{label_w - 8}" y="{y0 + 17}" text-anchor="end">{escape(short)}</text>')
        if value is None:
            # as long as the longest bar: this spend bought nothing, so no cost per outcome is high enough
            out.append(f'<rect class="none" x="{label_w}" y="{y0 + 4}" width="{_f(pw)}" height="{row - 8}" '
                       'fill="url(#hatch)"/>'
                       f'<text class="value flag" x="{label_w + pw + 8}" y="{y0 + 17}">{escape(text)}</text>')
        else:
            w = max(1.0, pw * float(value) / high)
            out.append(f'<rect class="bar" x="{label_w}" y="{y0 + 4}" width="{_f(w)}" height="{row - 8}" '
                       f'fill="{colour}"/>'
                       f'<text class="value" x="{_f(label_w + w + 8)}" y="{y0 + 17}">{escape(text)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


@dataclass(frozen=True)
class Point:
    x: float  # tokens (> 0)
    y: float  # successful outcomes per million tokens (>= 0)
    colour: str
    tip: str
    flag: str | None  # the label of a flagged point


def scatter(points: list[Point], x_label: str, y_label: str) -> str:
    """Log-log scatter; points with y = 0 sit on their own row under the axis, labelled "none"."""
    left, right, top, bottom, height = 64, 16, 12, 58, 440
    zero_row = 18  # the strip under the plot for points without any successful outcome
    pw, ph = WIDTH - left - right, height - top - bottom - zero_row
    xs = [math.log10(p.x) for p in points]
    ys = [math.log10(p.y) for p in points if p.y > 0]
    x_lo, x_hi = math.floor(min(xs)), math.ceil(max(xs))
    y_lo, y_hi = (math.floor(min(ys)), math.ceil(max(ys))) if ys else (0, 1)
    x_hi, y_hi = max(x_hi, x_lo + 1), max(y_hi, y_lo + 1)

    def px(v: float) -> float:
        return left + pw * (math.log10(v) - x_lo) / (x_hi - x_lo)

    def py(v: float) -> float:
        if v <= 0:
            return top + ph + zero_row
        return top + ph - ph * (math.log10(v) - y_lo) / (y_hi - y_lo)

    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="value versus volume">']
    for e in range(x_lo, x_hi + 1):
        xx = left + pw * (e - x_lo) / (x_hi - x_lo)
        out.append(f'<line class="grid" x1="{_f(xx)}" x2="{_f(xx)}" y1="{top}" y2="{top + ph + zero_row}"/>'
                   f'<text class="axis" x="{_f(xx)}" y="{top + ph + zero_row + 18}" text-anchor="middle">'
                   f"{count(10 ** e)}</text>")
    for e in range(y_lo, y_hi + 1):
        yy = top + ph - ph * (e - y_lo) / (y_hi - y_lo)
        out.append(f'<line class="grid" x1="{left}" x2="{WIDTH - right}" y1="{_f(yy)}" y2="{_f(yy)}"/>'
                   f'<text class="axis" x="{left - 6}" y="{_f(yy + 4)}" text-anchor="end">{10.0 ** e:g}</text>')
    out.append(f'<text class="axis" x="{left - 6}" y="{top + ph + zero_row + 4}" text-anchor="end">none</text>'
               f'<line class="axis-line" x1="{left}" x2="{WIDTH - right}" y1="{top + ph + zero_row / 2}" '
               f'y2="{top + ph + zero_row / 2}" stroke-dasharray="3 3"/>')
    out.append(f'<text class="axis-title" x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">'
               f"{escape(x_label)}</text>"
               f'<text class="axis-title" transform="translate(14 {top + ph / 2}) rotate(-90)" '
               f'text-anchor="middle">{escape(y_label)}</text>')
    # flagged points last, so they are drawn on top
    for p in sorted(points, key=lambda p: p.flag is not None):
        cx, cy = _f(px(p.x)), _f(py(p.y))
        if p.flag is None:
            out.append(f'<circle class="dot" cx="{cx}" cy="{cy}" r="4" fill="{p.colour}">'
                       f"<title>{escape(p.tip)}</title></circle>")
        else:
            # the label goes right of the dot, or left of it near the right edge
            left_side = px(p.x) > WIDTH - 170
            lx, anchor = (px(p.x) - 10, "end") if left_side else (px(p.x) + 10, "start")
            out.append(f'<g class="flagged"><title>{escape(p.tip)}</title>'
                       f'<circle cx="{cx}" cy="{cy}" r="7" fill="{FLAG}" stroke="#fff" stroke-width="1.5"/>'
                       f'<text class="flag-label" x="{_f(lx)}" y="{_f(py(p.y) + 4)}" text-anchor="{anchor}">'
                       f"{escape(p.flag)}</text></g>")
    out.append("</svg>")
    return "".join(out)
