"""The HTML report: one self-contained file a FinOps analyst can open, mail or archive.

    write_report(client, Path("report.html"))            # what `yieldmeter report` and the demo call

What it shows, for a period (the last ``days`` whole UTC days up to ``now``; ``now`` defaults to
the newest call, as dbt's ``as_of`` does, so a replayed or simulated week reads as if it were
now): headline numbers, spend over time, cost per successful outcome by team, value versus
volume per user with the tokenmaxxing flags, model overkill savings and the top alerts.

Three modules: report_queries (every number, read from the dbt marts with their metric
definitions), report_charts (inline SVG) and report_format (numbers as text); this one lays the
sections out and renders the template. A section whose mart is missing says so and how to build
it (``yieldmeter transform``) instead of failing. Money is Decimal from the query to the text;
floats appear only as chart coordinates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from html import escape
from importlib.resources import files
from pathlib import Path

from clickhouse_connect.driver.client import Client
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from yieldmeter import report_queries as q
from yieldmeter.alerts.model import format_value
from yieldmeter.report_charts import FLAG, PALETTE, Point, hbars, scatter, stacked_area
from yieldmeter.report_format import count, share, usd, utc
from yieldmeter.report_queries import NOT_BUILT, MartMissing, ReportError, Warehouse

__all__ = ["DEFAULT_DAYS", "NOT_BUILT", "Report", "ReportError", "build_report", "render", "save", "usd", "write_report"]

TEMPLATE = "report_template.html"
DEFAULT_DAYS = 30
TOP_TEAMS = 15  # bars in the cost-per-outcome chart; the rest are summed in a note
TOP_ALERTS = 10
SERIES = 7  # stacked teams in the spend chart; the rest become "other teams"


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


# --- headline ----------------------------------------------------------------------------------


def unknown_cost(unpriced: int) -> str:
    return f"unknown: {unpriced:,} unpriced call{'s' if unpriced != 1 else ''}"


def headlines(w: Warehouse) -> tuple[list[Headline], list[str]]:
    try:
        t = q.totals(w)
    except MartMissing as missing:
        return [Headline(label, "—", str(missing)) for label in
                ("Total spend", "Calls", "Successful outcomes", "Cost per successful outcome", "Idle-token share")], []
    warnings = []
    if t.unpriced_calls:
        warnings.append(f"{t.unpriced_calls:,} of {t.calls:,} calls ({share(t.unpriced_calls, t.calls)}) have no known "
                        "price: spend here is partial (a lower bound) and the money ratios over them are unknown. "
                        "Add their prices (`yieldmeter prices`).")
    per_success_hint = ("total spend ÷ successful outcomes" if t.cost_per_successful_outcome_usd is not None
                        else unknown_cost(t.unpriced_calls) if t.unpriced_calls and t.successful_outcomes
                        else "no successful outcome")
    return [
        Headline("Total spend", usd(t.cost_usd), ("partial; " if t.unpriced_calls else "")
                 + f"after negotiated discounts; {count(t.tokens)} tokens"),
        Headline("Calls", count(t.calls), f"{t.unpriced_calls:,} unpriced" if t.unpriced_calls else "all priced"),
        Headline("Successful outcomes", count(t.successful_outcomes), f"of {count(t.outcomes)} reported outcomes"),
        Headline("Cost per successful outcome", usd(t.cost_per_successful_outcome_usd), per_success_hint),
        Headline("Idle-token share", share(t.idle_tokens, t.tokens) if t.tokens else "—",
                 f"{count(t.idle_tokens)} tokens in sessions that produced no outcome"),
    ], warnings


# --- spend over time -----------------------------------------------------------------------------


def spend_section(w: Warehouse) -> Section:
    section = Section(
        "spend", "Spend over time",
        "What the tokens cost per hour (per day for periods over two weeks), stacked by team.",
        "A step up that stays is a new workload or a model change; a narrow spike is usually a loop "
        "or a batch job: find its team here, then its model and user in the top alerts.")
    hourly = (w.end - w.start) <= timedelta(days=14)
    try:
        rows = q.spend_by_team(w, hourly)
    except MartMissing as missing:
        section.missing = str(missing)
        return section
    if not rows:
        section.missing = "No calls in this period."
        return section
    totals: dict[str, Decimal] = {}
    for _, who, cost in rows:
        totals[who] = totals.get(who, Decimal(0)) + cost
    ranked = sorted(totals, key=totals.get, reverse=True)
    named = ranked[: SERIES - 1] if len(ranked) > SERIES else ranked
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    t = w.start
    times = []
    while t < w.end:
        times.append(t)
        t += step
    index = {t: i for i, t in enumerate(times)}
    labels = named + (["other teams"] if len(ranked) > len(named) else [])
    values = {label: [Decimal(0)] * len(times) for label in labels}
    for t, who, cost in rows:
        label = who if who in named else "other teams"
        values[label][index[utc(t)]] += cost
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
        "(resolved tickets, merged PRs, qualified leads …); unknown while any of its calls is unpriced.",
        "Compare teams on the same app: the dearest ones pay more per result for the same work — look at "
        "their models and prompt sizes; red rows spent money and produced no successful outcome at all.")
    try:
        rows = q.cost_per_outcome_by_team(w)
    except MartMissing as missing:
        section.missing = str(missing)
        return section
    if not rows:
        section.missing = "No priced spend in this period."
        return section
    rows.sort(key=lambda r: r.cost_usd, reverse=True)  # the biggest budgets first decide what to show
    shown, rest = rows[:TOP_TEAMS], rows[TOP_TEAMS:]
    # no outcome first, then the dearest; unknown ones (unpriced calls) last
    shown.sort(key=lambda r: (r.successful_outcomes > 0, r.cost_per_successful_outcome_usd is None,
                              -(r.cost_per_successful_outcome_usd or 0)))

    def label(r: q.TeamApp) -> str:
        return f"{r.org} / {r.team} · {r.app}"

    def text(r: q.TeamApp) -> str:
        if not r.successful_outcomes:
            return f"no successful outcome — {usd(r.cost_usd)} spent"
        if r.cost_per_successful_outcome_usd is None:
            return unknown_cost(r.unpriced_calls)
        return f"{usd(r.cost_per_successful_outcome_usd)} per {r.outcome_type or 'outcome'}"

    bars = [(label(r), r.cost_per_successful_outcome_usd if r.successful_outcomes else None, text(r),
             f"{label(r)}: {usd(r.cost_usd)} spent, {r.successful_outcomes:,} successful outcomes, "
             f"{count(r.tokens)} tokens") for r in shown if r.cost_per_successful_outcome_usd is not None
            or not r.successful_outcomes]
    section.chart = Markup(hbars(bars, PALETTE[0])) if bars else None
    section.table = Table(
        ["team · app", "spend", "successful outcomes", "cost per successful outcome"],
        [[label(r), usd(r.cost_usd) + (" (partial)" if r.unpriced_calls else ""), f"{r.successful_outcomes:,}",
          usd(r.cost_per_successful_outcome_usd) if r.cost_per_successful_outcome_usd is not None
          else unknown_cost(r.unpriced_calls) if r.successful_outcomes else "no outcome"]
         for r in shown], numeric={1, 2, 3})
    if rest:
        section.notes.append(f"{len(rest)} smaller team/app pairs ({usd(sum(r.cost_usd for r in rest))} together) "
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
    flags = []
    for (kind, org, team, entity, app, week, weeks, tokens, cost, successes, reasons, yield_, peer_yield,
         peer_tokens, volume_z, yield_z, volume_growth, outcome_growth, peers) in q.flagged(w):
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
    try:
        volume = q.volume_by_user(w)
    except MartMissing as missing:
        section.missing = str(missing)
        return section
    if not volume:
        section.missing = "No calls in this period."
        return section
    try:
        flags, flags_missing = _flags(w), None
    except MartMissing as missing:
        flags, flags_missing = None, str(missing)
    flagged_users = {(f.org, f.team, f.entity, f.app) for f in flags or [] if f.entity_type == "user"}
    apps = sorted({v.app for v in volume})
    colours = {app: PALETTE[i % (len(PALETTE) - 2)] for i, app in enumerate(apps)}
    points = []
    for v in volume:
        key = (v.org, v.team, v.user, v.app)
        tip = (f"{v.org} / {v.team} / {v.user} · {v.app}: {count(v.tokens)} tokens, {usd(v.cost_usd)}, "
               f"{v.successful_outcomes:,} successful outcomes ({v.outcomes_per_million_tokens:.2f} per million tokens)")
        points.append(Point(float(v.tokens), v.outcomes_per_million_tokens, colours[v.app], tip,
                            v.user if key in flagged_users else None))
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
    try:
        rows = q.overkill(w)
    except MartMissing as missing:
        section.missing = str(missing)
        return section
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
    rows = q.alerts(w)
    if rows is None:
        section.missing = "No alerts table: run `yieldmeter migrate`."
        return section
    if not rows:
        section.missing = "No alert fired in this period."
        return section
    rows.sort(key=lambda r: (r[1] == "resolved", SEVERITY_RANK.get(r[2], 2), -utc(r[9]).timestamp()))
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
            f"{utc(opened):%a %m-%d %H:%M}",
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
    start, end = q.period(client, now, days)
    w = Warehouse(client, start, end)
    heads, warnings = headlines(w)
    sections = [spend_section(w), cost_per_outcome_section(w), value_volume_section(w),
                overkill_section(w), alerts_section(w)]
    return Report("yieldmeter — LLM spend against outcomes", start, end, datetime.now(timezone.utc),
                  heads, sections, warnings)


def render(report: Report) -> str:
    env = Environment(loader=FileSystemLoader(files("yieldmeter")),  # report_template.html: package data
                      autoescape=select_autoescape(["html"]),
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
