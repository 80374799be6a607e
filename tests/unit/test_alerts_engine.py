"""Incident decisions (pure), robust thresholds, keys and number formatting."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from yieldmeter.alerts.config import build_config
from yieldmeter.alerts.engine import Evaluation, _notice, plan
from yieldmeter.alerts.model import Event, Finding, Severity, evaluated_hour, format_change, format_value, incident_key
from yieldmeter.alerts.rules import robust_baseline, robust_threshold

pytestmark = pytest.mark.unit

NOW = datetime(2025, 3, 10, 15, 7, tzinfo=timezone.utc)
CONFIG = build_config({"defaults": {"cooldown_minutes": 60, "worsen_factor": 1.5}}, "test")


def finding(value="50", severity=Severity.WARNING, team="support", rule="spend_spike") -> Finding:
    return Finding(
        rule=rule, entity={"org": "acme", "team": team}, severity=severity, title=f"Spend spike: acme / {team}",
        value=Decimal(value), baseline=Decimal("10"), threshold=Decimal("15"), unit="USD/hour",
        observed_at=NOW.replace(minute=0) - timedelta(hours=1), query="SELECT 1",
    )


def open_notice(f: Finding, at: datetime = NOW):
    return _notice(plan(Evaluation([f], {f.rule}), {}, CONFIG, at)[0], CONFIG, at)


def decide(f: Finding | None, last, now=NOW, ran=("spend_spike",)):
    evaluation = Evaluation([f] if f else [], set(ran))
    return [(d.key, d.event) for d in plan(evaluation, {last.incident_key: last} if last else {}, CONFIG, now)]


def test_lifecycle_decisions():
    first = finding("50")
    key = "spend_spike/org=acme/team=support"
    assert decide(first, None) == [(key, Event.OPENED)]
    last = open_notice(first)
    assert last.event is Event.OPENED and last.opened_at == NOW and last.route == "default"
    later = NOW + timedelta(minutes=10)
    assert decide(finding("70"), last, later) == [(key, None)]  # within cooldown, not 1.5x worse
    assert decide(finding("75"), last, later) == [(key, Event.WORSENED)]  # grew by the factor
    assert decide(finding("50", Severity.CRITICAL), last, later) == [(key, Event.WORSENED)]
    assert decide(finding("50"), last, NOW + timedelta(minutes=60)) == [(key, Event.REPEATED)]
    assert decide(None, last, later) == [(key, Event.RESOLVED)]
    assert decide(None, last, later, ran=()) == []  # the rule did not run: no evidence it cleared


def test_notices_of_one_incident_share_its_id_and_opening_time():
    last = open_notice(finding("50"))
    later = NOW + timedelta(hours=2)
    [worse] = plan(Evaluation([finding("90")], {"spend_spike"}), {last.incident_key: last}, CONFIG, later)
    notice = _notice(worse, CONFIG, later)
    assert (notice.incident_id, notice.opened_at, notice.evaluated_at) == (last.incident_id, NOW, later)
    [resolved] = plan(Evaluation([], {"spend_spike"}), {notice.incident_key: notice}, CONFIG, later)
    cleared = _notice(resolved, CONFIG, later)
    assert cleared.event is Event.RESOLVED and cleared.value == Decimal("90") and cleared.incident_id == last.incident_id
    reopened = open_notice(finding("50"), later)
    assert reopened.incident_id != last.incident_id


def test_robust_threshold_needs_all_three_conditions():
    steady = robust_baseline([Decimal(v) for v in ["10", "11", "9", "10", "12"]], "test")
    assert (steady.median, steady.mad) == (10, 1)
    # median + 3.5 * 1.4826 * 1 = 15.189..., ratio 1.5 * 10 = 15, floor 1
    assert robust_threshold(steady, Decimal("3.5"), Decimal("1.5"), Decimal("1")) == Decimal("15.18910")
    assert robust_threshold(steady, Decimal("3.5"), Decimal("2"), Decimal("1")) == 20
    assert robust_threshold(steady, Decimal("3.5"), Decimal("1.5"), Decimal("100")) == 100
    even = robust_baseline([Decimal(1), Decimal(2)], "test")
    assert even.median == Decimal("1.5")  # a true median, not the lower element


def test_evaluated_hour_is_the_last_settled_complete_hour():
    assert evaluated_hour(NOW, timedelta(minutes=5)) == datetime(2025, 3, 10, 14, tzinfo=timezone.utc)
    assert evaluated_hour(NOW, timedelta(minutes=10)) == datetime(2025, 3, 10, 13, tzinfo=timezone.utc)


def test_keys_and_formatting():
    assert incident_key("spend_spike", {"org": "acme", "team": "support", "app": "support-bot"}) == (
        "spend_spike/org=acme/team=support/app=support-bot"
    )
    assert format_value(Decimal("1234.5"), "USD/hour") == "$1,234.50/hour"
    assert format_value(Decimal("0.01234"), "USD") == "$0.0123"
    assert format_value(Decimal("0.266666666667"), "share") == "26.7%"
    assert format_value(Decimal("340"), "dead letters/hour") == "340 dead letters/hour"
    assert format_change(Decimal("61"), Decimal("10")) == "+510% (×6.1)"
    assert format_change(Decimal("5"), Decimal("0")) == "new (baseline 0)"
