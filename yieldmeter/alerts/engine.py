"""Evaluate the rules, turn findings into incident notices, deliver pending notices.

One cycle, in order:
  1. evaluate: run every rule whose tables exist (a missing table skips the rule, and its
     open incidents stay open: absence of evidence is not a resolution);
  2. plan: per finding, open / worsen / repeat (after the cooldown) or suppress; per open
     incident of a rule that ran and found nothing, resolve;
  3. store the notices (alerts), then deliver every pending notice, oldest first, storing
     each attempt (alert_deliveries). A failed attempt is retried by a later cycle.
The main job calls :func:`cycle` after each batch; `yieldmeter alerts` calls it on demand.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable

from clickhouse_connect.driver.client import Client
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from yieldmeter.alerts.config import AlertsConfig
from yieldmeter.alerts.model import Event, Finding, Notice, utc
from yieldmeter.alerts.registry import RULES, RuleSpec
from yieldmeter.alerts.slack import SlackSender, build_message, headline, numbers
from yieldmeter.alerts.store import IncidentStore
from yieldmeter.warehouse import WarehouseError


@dataclass
class Evaluation:
    findings: list[Finding] = field(default_factory=list)
    ran: set[str] = field(default_factory=set)
    skipped: dict[str, str] = field(default_factory=dict)  # rule -> why it did not run (not an error)
    failed: dict[str, str] = field(default_factory=dict)  # rule -> error


@dataclass(frozen=True)
class Decision:
    key: str
    event: Event | None  # None: suppressed within the cooldown
    finding: Finding | None  # None for a resolution
    previous: Notice | None  # the incident's latest notice, if it is open


@dataclass
class CycleReport:
    evaluation: Evaluation
    decisions: list[Decision]
    notices: list[Notice]
    delivered: int = 0
    printed: int = 0
    failed: list[str] = field(default_factory=list)  # "incident_key: error" per failed attempt
    waiting: int = 0  # pending notices not attempted this cycle (their route just failed)


def _tables(client: Client) -> set[str]:
    return {row[0] for row in client.query("SELECT name FROM system.tables WHERE database = currentDatabase()").result_rows}


def evaluate(client: Client, config: AlertsConfig, now: datetime, rules: Iterable[RuleSpec] | None = None) -> Evaluation:
    """Run the rules against the warehouse; one broken rule does not stop the others."""
    now = utc(now)
    result = Evaluation()
    present = _tables(client)
    for spec in RULES.values() if rules is None else rules:
        missing = [t for t in spec.tables if t not in present]
        if missing:
            result.skipped[spec.name] = f"table {', '.join(missing)} does not exist yet ({spec.remedy})"
            continue
        try:
            findings = spec.evaluate(client, config, now)
        except Exception as error:
            result.failed[spec.name] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
            continue
        result.ran.add(spec.name)
        result.findings.extend(findings)
    return result


def plan(evaluation: Evaluation, open_incidents: dict[str, Notice], config: AlertsConfig, now: datetime) -> list[Decision]:
    """What to tell people (pure: the same inputs give the same decisions)."""
    now = utc(now)
    decisions = []
    seen = set()
    for finding in evaluation.findings:
        if finding.key in seen:  # two levels can never share a key, but a rule bug must not double-send
            continue
        seen.add(finding.key)
        last = open_incidents.get(finding.key)
        params = config.params(finding.rule, finding.org, finding.team)
        if last is None:
            event = Event.OPENED
        elif finding.severity.rank > last.severity.rank or (
            finding.value > last.value and finding.value >= last.value * params.worsen_factor
        ):
            event = Event.WORSENED
        elif now - last.evaluated_at >= timedelta(minutes=params.cooldown_minutes):
            event = Event.REPEATED
        else:
            event = None
        decisions.append(Decision(finding.key, event, finding, last))
    for key, last in open_incidents.items():
        if key not in seen and last.rule in evaluation.ran:
            decisions.append(Decision(key, Event.RESOLVED, None, last))
    return decisions


def _notice(decision: Decision, config: AlertsConfig, now: datetime) -> Notice:
    source = decision.finding
    last = decision.previous
    new = decision.event is Event.OPENED
    if source is None:  # resolved: the last notice's numbers, as evidence of what cleared
        assert last is not None
        base = dict(
            rule=last.rule, severity=last.severity, title=last.title, summary=last.summary, entity=last.entity,
            value=last.value, baseline=last.baseline, threshold=last.threshold, unit=last.unit,
            observed_at=last.observed_at, query=last.query, details=last.details,
        )
    else:
        base = dict(
            rule=source.rule, severity=source.severity, title=source.title, summary=source.summary,
            entity=source.entity, value=source.value, baseline=source.baseline, threshold=source.threshold,
            unit=source.unit, observed_at=utc(source.observed_at), query=source.query, details=source.details,
        )
    entity = base["entity"]
    return Notice(
        notice_id=str(uuid.uuid4()),
        incident_id=str(uuid.uuid4()) if new or last is None else last.incident_id,
        event=decision.event,
        incident_key=decision.key,
        opened_at=now if new or last is None else last.opened_at,
        evaluated_at=now,
        route=config.route_for(entity.get("org", ""), entity.get("team", "")).name,
        **base,
    )


def print_notice(console: Console, notice: Notice) -> None:
    """A notice on the terminal, for when no webhook is configured (and for dry runs)."""
    table = Table.grid(padding=(0, 2))
    for label, value in numbers(notice):
        table.add_row(f"[bold]{label}[/bold]", value)
    table.add_row("[bold]Incident[/bold]", notice.incident_key)
    table.add_row("[bold]Investigate[/bold]", notice.query)
    style = "green" if notice.event is Event.RESOLVED else "red" if notice.severity.rank > 1 else "yellow"
    title = headline(notice).split(" ", 1)[1]  # without the Slack emoji code
    console.print(Panel(table, title=title, title_align="left", border_style=style))


def _retry_delay(config: AlertsConfig, attempt: int, retry_after: float | None) -> timedelta:
    spec = config.delivery
    seconds = min(spec.retry_base_seconds * 2 ** (attempt - 1), spec.retry_max_seconds)
    return timedelta(seconds=max(seconds, retry_after or 0))


def deliver_pending(store: IncidentStore, config: AlertsConfig, now: datetime, report: CycleReport, console: Console) -> None:
    """Send every due pending notice; store every attempt. A route that fails is not retried
    again in this cycle (its remaining notices wait, still pending, for the next one)."""
    sender = SlackSender(config.delivery)
    broken: set[str] = set()
    for item in store.pending(now):
        notice, attempt = item.notice, item.attempts + 1
        route = config.route_for(notice.org, notice.team)
        if route.name in broken:
            report.waiting += 1
            continue
        if route.unrouted:
            print_notice(console, notice)
            store.add_attempt(notice, attempt, route.name, "printed", now, now)
            report.printed += 1
            continue
        if route.url is None:  # a named route whose URL is missing: keep it, retry later
            result_ok, status, error, retries, retry_after = False, 0, route.problem or "", 0, None
        else:
            result = sender.send(route.url, build_message(notice))
            result_ok, status, error, retries, retry_after = (
                result.ok, result.http_status, result.error, result.retries, result.retry_after
            )
        if result_ok:
            store.add_attempt(notice, attempt, route.name, "delivered", now, now, status, retries)
            report.delivered += 1
        else:
            next_retry = now + _retry_delay(config, attempt, retry_after)
            store.add_attempt(notice, attempt, route.name, "failed", now, next_retry, status, retries, error)
            report.failed.append(f"{notice.incident_key} via {route.name}: {error}")
            broken.add(route.name)


def cycle(
    client: Client,
    config: AlertsConfig,
    now: datetime,
    deliver: bool = True,
    console: Console | None = None,
    rules: Iterable[RuleSpec] | None = None,
) -> CycleReport:
    """Evaluate, record incident changes, and (unless deliver is False) deliver pending notices."""
    now = utc(now)
    store = IncidentStore(client)
    missing = store.missing_tables()
    if missing:
        raise WarehouseError(f"The alert tables {', '.join(missing)} do not exist: run `yieldmeter migrate` first.")
    evaluation = evaluate(client, config, now, rules)
    decisions = plan(evaluation, store.open_incidents(), config, now)
    notices = [_notice(d, config, now) for d in decisions if d.event is not None]
    store.add_notices(notices)
    report = CycleReport(evaluation, decisions, notices)
    if deliver:
        deliver_pending(store, config, now, report, console or Console(highlight=False))
    return report
