"""What a rule finds, and what the incident log records about it.

A rule returns :class:`Finding` objects: one per entity that breaches its threshold now,
carrying the evidence (value, baseline, threshold) and a query to investigate. The engine
turns findings into :class:`Notice` objects (an incident was opened, worsened, is still
firing after its cooldown, or resolved); each notice is sent to Slack exactly once.
Every number is a Decimal: money and rates never pass through a float.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return 2 if self is Severity.CRITICAL else 1


class Event(StrEnum):
    """An incident state change; each one is worth exactly one Slack message."""

    OPENED = "opened"
    WORSENED = "worsened"  # more severe, or the value grew by the worsen factor since the last notice
    REPEATED = "repeated"  # still breaching after the cooldown
    RESOLVED = "resolved"  # the rule ran and no longer finds it


def incident_key(rule: str, entity: dict[str, str]) -> str:
    """The stable identity of an incident: the rule and the entity, in the entity's order.

    >>> incident_key("spend_spike", {"org": "acme", "team": "support", "app": "support-bot"})
    'spend_spike/org=acme/team=support/app=support-bot'
    """
    return "/".join([rule, *(f"{name}={value}" for name, value in entity.items())])


@dataclass(frozen=True)
class Finding:
    """One entity breaching one rule in one evaluation, with its evidence.

    Higher values are worse for every rule (spend, error rate, dead letters, unpriced calls);
    the engine relies on that to decide whether an open incident worsened.
    """

    rule: str
    entity: dict[str, str]  # ordered: org, team, app, ... (what the incident is about)
    severity: Severity
    title: str  # one line, for the header: "Spend spike: acme / support / support-bot"
    value: Decimal
    baseline: Decimal
    threshold: Decimal
    unit: str  # "USD/hour", "share", "dead letters/hour", "calls"
    observed_at: datetime  # start of the window the numbers describe (UTC)
    query: str  # SQL to paste into ClickHouse to investigate
    summary: str = ""  # one sentence of mrkdwn: what happened against what
    details: dict[str, str] = field(default_factory=dict)  # further evidence, shown as fields

    @property
    def key(self) -> str:
        return incident_key(self.rule, self.entity)

    @property
    def org(self) -> str:
        return self.entity.get("org", "")

    @property
    def team(self) -> str:
        return self.entity.get("team", "")


@dataclass(frozen=True)
class Notice:
    """One row of the `alerts` table: an incident state change to tell Slack about once."""

    notice_id: str
    incident_id: str  # the same for every notice of one opening of an incident
    event: Event
    rule: str
    incident_key: str
    severity: Severity
    title: str
    summary: str
    entity: dict[str, str]
    value: Decimal
    baseline: Decimal
    threshold: Decimal
    unit: str
    observed_at: datetime
    opened_at: datetime  # when this opening of the incident began
    evaluated_at: datetime
    query: str
    details: dict[str, str]
    route: str  # the route name at the time of the notice; never the webhook URL

    @property
    def org(self) -> str:
        return self.entity.get("org", "")

    @property
    def team(self) -> str:
        return self.entity.get("team", "")


def format_value(value: Decimal, unit: str) -> str:
    """A number for people: "$1,234.50/hour", "12.5%", "340 dead letters/hour"."""
    if unit.startswith("USD"):
        places = Decimal("0.0001") if 0 < abs(value) < 1 else Decimal("0.01")
        return f"${value.quantize(places):,}{unit.removeprefix('USD')}"
    if unit == "share":
        return f"{(value * 100).quantize(Decimal('0.1'))}%"
    number = value.quantize(Decimal("1")) if value == value.to_integral_value() else value.quantize(Decimal("0.01"))
    return f"{number:,} {unit}"


def format_change(value: Decimal, baseline: Decimal) -> str:
    """How far the value is from its baseline: "+517% (×6.2)", or "new" when the baseline is zero."""
    if baseline <= 0:
        return "new (baseline 0)" if value > 0 else "0"
    ratio = value / baseline
    return f"{(ratio - 1) * 100:+.0f}% (×{ratio:.1f})"


def sql_string(text: str) -> str:
    """A ClickHouse string literal, for the investigate queries people paste."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_time(moment: datetime) -> str:
    return f"toDateTime('{utc(moment):%Y-%m-%d %H:%M:%S}', 'UTC')"


def utc(moment: datetime) -> datetime:
    """A timezone-aware UTC datetime (ClickHouse hands back naive UTC values)."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def hour_floor(moment: datetime) -> datetime:
    return utc(moment).replace(minute=0, second=0, microsecond=0)


def evaluated_hour(now: datetime, settle: timedelta) -> datetime:
    """The last complete hour that ended at least `settle` ago: late rows have had time to land."""
    return hour_floor(utc(now) - settle) - timedelta(hours=1)
