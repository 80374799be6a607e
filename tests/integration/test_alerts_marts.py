"""The rules over the dbt marts on the real ClickHouse engine (chdb): budget_status,
value_metrics_daily and tokenmaxxing_signals created from their enforced dbt contracts (the
manifest's columns and types, so they cannot drift from `dbt build`) with a few realistic rows
(the full marts come from `dbt build`, exercised on the simulated workload in
tests/e2e/test_alerts_planted.py); each rule fires, stays quiet, and is skipped without its mart."""

from __future__ import annotations

from datetime import date, datetime, timezone
from functools import partial
from decimal import Decimal

import pytest

from tests.integration.alerts_support import DEFAULTS, run_rule
from yieldmeter.alerts.config import build_config
from yieldmeter.alerts.engine import evaluate
from yieldmeter.alerts.model import Severity
from yieldmeter.alerts.rules import PLANNED, RULES

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 20, 12, 7, tzinfo=timezone.utc)  # a Friday; evaluates the hour from 11:00

run = partial(run_rule, now=NOW)  # the rules at this file's evaluation time


def test_mart_rules_are_registered_not_planned_and_skipped_without_their_marts(client):
    assert PLANNED == {}
    mart_rules = [RULES[n] for n in ("budget_burn", "cost_per_outcome_regression", "tokenmaxxing")]
    evaluation = evaluate(client, DEFAULTS, NOW, mart_rules)
    assert evaluation.ran == set() and evaluation.failed == {}
    assert set(evaluation.skipped) == {"budget_burn", "cost_per_outcome_regression", "tokenmaxxing"}
    assert "budget_status does not exist yet (build the dbt marts: `yieldmeter transform`)" in evaluation.skipped["budget_burn"]


def test_budget_burn_warns_over_80_percent_and_is_critical_over_100(client, mart_ddl):
    client.command(mart_ddl("budget_status"))
    march, as_of = date(2026, 3, 1), datetime(2026, 3, 20, 12, tzinfo=timezone.utc)
    rows = [  # org, team, budget, month to date, projected
        ("acme", "*", "1500", "900", "1450"),  # 97%: warning
        ("acme", "support", "100", "90", "150"),  # 150%: critical
        ("acme", "platform", "1000", "300", "480"),  # 48%: quiet
        ("globex", "*", "1000", "500", "790"),  # 79%: quiet
    ]
    client.insert("budget_status", [
        [org, team, march, Decimal(b), Decimal(m), as_of, 0.61, Decimal(p)]
        for org, team, b, m, p in rows] + [["acme", "*", date(2026, 2, 1), Decimal(1), Decimal(9), as_of, 1.0,
                                            Decimal(9)]],  # last month: not judged in March
        column_names=["org_id", "team", "month", "budget_usd", "month_to_date_usd", "as_of",
                      "month_elapsed_share", "projected_month_end_usd"])
    found = run(client, "budget_burn")
    assert set(found) == {"budget_burn/org=acme", "budget_burn/org=acme/team=support"}
    org, team = found["budget_burn/org=acme"], found["budget_burn/org=acme/team=support"]
    assert (org.severity, org.value, org.baseline, org.threshold) == (Severity.WARNING, 1450, 1500, 1200)
    assert team.severity is Severity.CRITICAL and "150%" in team.summary
    # per-org threshold from the YAML
    config = build_config({"overrides": [{"org": "globex", "rules": {"budget_burn": {"warn_share": 0.75}}}]}, "t")
    assert "budget_burn/org=globex" in run(client, "budget_burn", config)


def test_cost_per_outcome_regression_week_over_week(client, mart_ddl):
    client.command(mart_ddl("value_metrics_daily"))
    rows = []
    for offset in range(1, 15):  # the 14 complete days before NOW's day
        day = date(2026, 3, 20 - offset)
        this_week = offset <= 7
        # support-bot: $2/day for 4 tickets last week, $6.50/day for 4 this week: x3.25, critical (above x3)
        rows.append([day, "acme", "support", "u1", "support-bot", "m", "ticket_resolved",
                     Decimal("6.5" if this_week else "2"), 4, 0, 1000, 10])
        # coding-agent: steady
        rows.append([day, "acme", "platform", "u2", "coding-agent", "m", "pr_merged", Decimal("5"), 2, 0, 1000, 10])
        # doc-summarizer: dearer, but an unpriced call this week makes its cost unknowable
        rows.append([day, "globex", "docs", "u3", "doc-summarizer", "m", "task_completed",
                     Decimal("9" if this_week else "1"), 3, 1 if offset == 2 else 0, 1000, 10])
    rows.append([date(2026, 3, 20), "acme", "platform", "u2", "coding-agent", "m", "pr_merged", Decimal("900"), 1, 0,
                 1, 1])  # today is not complete: not counted
    client.insert("value_metrics_daily", rows, column_names=[
        "day", "org_id", "team", "user_id", "app", "model", "outcome_type", "cost_usd", "successful_outcomes",
        "unpriced_calls", "total_tokens", "calls"])
    found = run(client, "cost_per_outcome_regression")
    key = "cost_per_outcome_regression/org=acme/team=support/app=support-bot/outcome=ticket_resolved"
    assert set(found) == {key}
    f = found[key]
    assert (f.value, f.baseline, f.severity) == (Decimal("1.625"), Decimal("0.5"), Severity.CRITICAL)
    assert f.unit == "USD/ticket_resolved" and "28 successes" in f.details["This week"]


def test_tokenmaxxing_one_incident_per_flagged_entity_with_its_evidence(client, mart_ddl):
    client.command(mart_ddl("tokenmaxxing_signals"))
    this_week, last_week, old = date(2026, 3, 16), date(2026, 3, 9), date(2026, 2, 23)

    def signal(week, entity_type, entity_id, flagged, team="platform", tokens=5_000_000, outcome="pr_merged"):
        return [week, entity_type, "acme", team, entity_id, "coding-agent", outcome, tokens, Decimal("42.5"), 1,
                0.3, 12, 800_000.0, 2.5, 2.9, -2.4, 12.5, -3.1, 1.8, 1.0, flagged,
                ["high_volume", "low_yield"] if flagged else []]

    client.insert("tokenmaxxing_signals", [
        signal(this_week, "user", "maxxer", True), signal(last_week, "user", "maxxer", True),  # critical
        signal(last_week, "user", "rising", True),  # warning: last week only
        signal(this_week, "user", "honest", False),
        signal(old, "user", "former", True),  # flagged long ago: not now
        signal(this_week, "team", "platform", True),
        signal(date(2026, 3, 23), "user", "future", True),  # after NOW (a replay reads only what it could see)
    ], column_names=["week", "entity_type", "org_id", "team", "entity_id", "app", "outcome_type", "total_tokens",
                     "cost_usd", "successful_outcomes", "outcome_yield", "peers", "peer_median_tokens",
                     "peer_median_yield", "volume_z", "yield_z", "expected_successful_outcomes", "shortfall_z",
                     "volume_growth", "outcome_growth", "is_flagged", "reasons"])
    found = run(client, "tokenmaxxing")
    user = "tokenmaxxing/org=acme/team=platform/app=coding-agent/user="
    assert set(found) == {user + "maxxer", user + "rising", "tokenmaxxing/org=acme/team=platform/app=coding-agent"}
    maxxer = found[user + "maxxer"]
    assert maxxer.severity is Severity.CRITICAL and found[user + "rising"].severity is Severity.WARNING
    assert (maxxer.value, maxxer.baseline) == (5_000_000, 800_000)
    assert "high_volume, low_yield" in maxxer.summary and "12 peers" in maxxer.details["Volume z / yield z"]
    assert maxxer.details["Yield (successes per M tokens)"] == "0.300 vs peer median 2.500"
    # only users, per the YAML
    config = build_config({"rules": {"tokenmaxxing": {"entity_types": ["user"], "weeks": 1, "critical_weeks": 1}}}, "t")
    assert set(run(client, "tokenmaxxing", config)) == {user + "maxxer"}
