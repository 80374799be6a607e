"""The alert rules on the real ClickHouse engine (chdb), with synthetic rollup rows and dead
letters that trigger and clear each rule; and `yieldmeter alerts` as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pydantic import SecretStr

from tests.conftest import free_port
from tests.integration.alerts_support import DEFAULTS, HOUR, NOW, Receiver, history, hourly, insert_hourly
from tests.integration.alerts_support import run_rule as run
from yieldmeter.alerts.config import build_config
from yieldmeter.alerts.engine import cycle, evaluate
from yieldmeter.alerts.model import Severity, evaluated_hour
from tests.block_kit import payload_problems
from yieldmeter.warehouse import migrate, open_warehouse

pytestmark = pytest.mark.integration



# --- spend spike -----------------------------------------------------------------------------


def weekly_history(cost: str, weeks: int = 4, **kwargs) -> list[list]:
    """The same hour of the week in previous weeks, plus quieter hours in between."""
    rows = [hourly(HOUR - timedelta(weeks=w), cost=cost, **kwargs) for w in range(1, weeks + 1)]
    return rows + [hourly(HOUR - timedelta(hours=h), cost="0.5", **kwargs) for h in range(1, 24)]


def test_spend_spike_against_the_same_hour_in_previous_weeks(client):
    insert_hourly(client, weekly_history("10") + [hourly(HOUR, cost="40"), hourly(HOUR, cost="21", user="u2")])
    found = run(client, "spend_spike")
    assert set(found) == {"spend_spike/org=acme/team=support", "spend_spike/org=acme/team=support/app=support-bot"}
    spike = found["spend_spike/org=acme/team=support/app=support-bot"]
    assert (spike.value, spike.baseline, spike.threshold) == (Decimal(61), Decimal(10), Decimal(15))
    assert spike.severity is Severity.CRITICAL  # above 3 x max(median, min_cost)
    assert spike.details["Baseline"] == "median of the same hour in the previous 4 weeks"
    assert spike.observed_at == HOUR and spike.unit == "USD/hour"
    # the investigate query runs, and shows what drove the spike
    rows = client.query(spike.query).result_rows
    assert [(r[0], r[1], r[2]) for r in rows] == [("gpt-4.1", "u1", Decimal(40)), ("gpt-4.1", "u2", Decimal(21))]


def test_a_normal_hour_for_its_weekday_is_not_a_spike(client):
    # 14:00 on Mondays always costs about $12: high against the quiet hours, normal for the weekday
    insert_hourly(client, weekly_history("12") + [hourly(HOUR, cost="13")])
    assert run(client, "spend_spike") == {}


def test_spend_spike_falls_back_to_recent_hours_then_needs_history(client):
    insert_hourly(client, history(30, cost="2") + [hourly(HOUR, cost="9")])
    spike = run(client, "spend_spike")["spend_spike/org=acme/team=support/app=support-bot"]
    assert spike.details["Baseline"] == "median of the previous 30 hours"
    assert (spike.baseline, spike.threshold, spike.severity) == (2, 3, Severity.CRITICAL)  # 9 > 3 x 2
    assert run(client, "spend_spike", now=NOW + timedelta(hours=1)) == {}  # the next hour is quiet: it clears


def test_spend_spike_without_a_day_of_history_is_not_judged(client):
    insert_hourly(client, history(20, cost="2") + [hourly(HOUR, cost="90")])
    assert run(client, "spend_spike") == {}


def test_spend_spike_thresholds_and_levels_per_org_and_team(client):
    rows = history(30, cost="2") + [hourly(HOUR, cost="9")]
    rows += history(30, cost="2", org="globex", team="ml") + [hourly(HOUR, cost="9", org="globex", team="ml")]
    insert_hourly(client, rows)
    config = build_config({
        "rules": {"spend_spike": {"levels": ["org"]}},
        "overrides": [{"org": "acme", "rules": {"spend_spike": {"min_cost_usd": 100}}},
                      {"org": "globex", "team": "ml", "rules": {"spend_spike": {"levels": ["team"]}}}],
    }, "test")
    # acme: $9 is under its $100 floor; globex: org level by default, team level for its ml team
    assert set(run(client, "spend_spike", config)) == {"spend_spike/org=globex", "spend_spike/org=globex/team=ml"}


# --- error rate, unpriced models, dead letters ----------------------------------------------


def test_error_rate_spike(client):
    insert_hourly(client, history(24, calls=100, errors=1) + [hourly(HOUR, calls=100, errors=30)]
                  + history(24, calls=100, errors=1, app="batch") + [hourly(HOUR, calls=100, errors=60, app="batch")]
                  + [hourly(HOUR, calls=10, errors=5, app="tiny")])  # too few calls to judge
    found = run(client, "error_rate_spike")
    assert set(found) == {"error_rate_spike/org=acme/team=support/app=support-bot",
                          "error_rate_spike/org=acme/team=support/app=batch"}
    bot = found["error_rate_spike/org=acme/team=support/app=support-bot"]
    assert (bot.value, bot.baseline, bot.threshold, bot.severity) == (
        Decimal("0.3"), Decimal("0.01"), Decimal("0.05"), Severity.WARNING)
    assert found["error_rate_spike/org=acme/team=support/app=batch"].severity is Severity.CRITICAL
    assert client.query(bot.query).result_rows == [("openai", "gpt-4.1", 30, 100, 0.3)]


def test_unpriced_model_fires_and_clears_after_its_window(client):
    insert_hourly(client, [hourly(HOUR - timedelta(hours=3), model="mystery-1", unpriced=4, calls=4, cost="0"),
                           hourly(HOUR, model="mystery-1", unpriced=2, calls=2, cost="0", org="globex"),
                           hourly(HOUR, cost="3")])
    [(key, finding)] = run(client, "unpriced_model").items()
    assert key == "unpriced_model/provider=openai/model=mystery-1"
    assert (finding.value, finding.baseline, finding.threshold) == (6, 0, 1)
    assert finding.details == {"All calls": "6", "Orgs": "acme, globex"}
    assert run(client, "unpriced_model", now=NOW + timedelta(hours=23)) != {}
    assert run(client, "unpriced_model", now=NOW + timedelta(hours=24)) == {}


def dead_letters(client, topic: str, hour: datetime, count: int, reason="missing field: model", first_offset=0):
    rows = [[topic, 0, first_offset + i, hour + timedelta(minutes=i % 60), reason, "{}", "usage.dlq", 0, i, hour]
            for i in range(count)]
    client.insert("dead_letters", rows, column_names=[
        "source_topic", "source_partition", "source_offset", "rejected_at", "reason", "payload",
        "_topic", "_partition", "_offset", "_timestamp"])


def test_dead_letter_spike(client):
    dead_letters(client, "usage.events", HOUR, 12)
    dead_letters(client, "usage.events", HOUR, 12)  # re-delivered: counted once
    dead_letters(client, "usage.outcomes", HOUR, 5)  # under min_count
    [(key, finding)] = run(client, "dead_letter_spike").items()
    assert key == "dead_letter_spike/topic=usage.events"
    assert (finding.value, finding.baseline, finding.threshold) == (12, 0, 10)
    assert finding.details["Top reasons"] == "missing field: model"
    assert client.query(finding.query).result_rows[0][:2] == ("missing field: model", 12)


def test_dead_letters_at_their_usual_rate_do_not_fire(client):
    for h in range(1, 169):
        dead_letters(client, "usage.events", HOUR - timedelta(hours=h), 10, first_offset=h * 100)
    dead_letters(client, "usage.events", HOUR, 15, first_offset=0)
    assert run(client, "dead_letter_spike") == {}  # 15 < 2 x median 10


def test_rules_whose_table_is_missing_are_skipped_not_failed(client):
    client.command("DROP VIEW calls_hourly_mv")
    client.command("DROP TABLE calls_hourly")  # e.g. a server migrated by an older version
    evaluation = evaluate(client, DEFAULTS, NOW)
    assert evaluation.ran == {"dead_letter_spike", "budget_control"} and evaluation.failed == {}
    assert set(evaluation.skipped) == {"spend_spike", "error_rate_spike", "unpriced_model",
                                       "budget_burn", "cost_per_outcome_regression", "tokenmaxxing"}  # no dbt marts here
    assert "calls_hourly does not exist yet" in evaluation.skipped["spend_spike"]


# --- end to end ------------------------------------------------------------------------------


def test_spend_spike_to_slack_and_back(client):
    slack = Receiver(free_port()).start()
    try:
        config = build_config({"rules": {"spend_spike": {"levels": ["app"]}}, "delivery": {"backoff_seconds": 0.01}},
                              "test", default_webhook=SecretStr(slack.url))
        insert_hourly(client, history(30, cost="2") + [hourly(HOUR, cost="9"), hourly(HOUR + timedelta(hours=1), cost="2")])
        assert cycle(client, config, NOW).delivered == 1
        assert cycle(client, config, NOW + timedelta(hours=1)).delivered == 1  # the next hour is normal
    finally:
        slack.stop()
    first, second = (m.body for m in slack.received)
    assert payload_problems(first) == [] and payload_problems(second) == []
    assert first["blocks"][0]["text"]["text"] == ":rotating_light: Spend spike: acme / support / support-bot"
    fields = [f["text"] for f in first["blocks"][2]["fields"]]
    assert fields[:4] == ["*Value*\n$9.00/hour", "*Baseline*\n$2.00/hour", "*Threshold*\n$3.00/hour",
                          "*Change*\n+350% (×4.5)"]
    assert "FROM calls_hourly" in first["blocks"][-1]["text"]["text"]
    assert second["blocks"][0]["text"]["text"].endswith("Resolved: Spend spike: acme / support / support-bot")


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([sys.executable, "-m", "yieldmeter", "alerts", *args], capture_output=True, text=True,
                          env=base | env, timeout=180)


def test_cli_dry_run_then_cycle(warehouse_url, tmp_path):
    # Rows around the real clock: a spike in the hour the command will judge (and the next,
    # should the hour turn while the test runs).
    hour = evaluated_hour(datetime.now(timezone.utc), timedelta(minutes=5))
    with open_warehouse(warehouse_url) as client:
        migrate(client)
        insert_hourly(client, history(30, end=hour, cost="2") + [hourly(hour, cost="50"),
                                                                  hourly(hour + timedelta(hours=1), cost="50")])
    slack = Receiver(free_port()).start()
    env = {"YIELDMETER_STATE_DIR": str(tmp_path / "state"), "YIELDMETER_CLICKHOUSE_URL": warehouse_url,
           "YIELDMETER_SLACK_WEBHOOK_URL": slack.url}
    try:
        dry = cli(env, "--dry-run")
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert "would be opened" in dry.stdout and "spend_spike/org=acme/team=support/app=support-bot" in dry.stdout
        assert "Dry run: nothing was stored or sent." in dry.stdout and slack.received == []
        real = cli(env)
        assert real.returncode == 0, real.stdout + real.stderr
        assert "2 notice(s) recorded; 2 delivered to Slack" in real.stdout
        again = cli(env)
        assert "0 notice(s) recorded; 0 delivered" in again.stdout and "suppressed" in again.stdout
        bad = tmp_path / "alerts.yaml"
        bad.write_text("rules:\n  spend_spike: {k: lots}\n")
        wrong = cli(env, "--config", str(bad))
        assert wrong.returncode == 1 and f"{bad}:" in wrong.stdout and "rules.spend_spike.k" in wrong.stdout
    finally:
        slack.stop()
    assert len(slack.received) == 2
    assert all("secret-token" not in r.stdout for r in (dry, real, again))
    with open_warehouse(warehouse_url) as client:
        assert client.query("SELECT count() FROM alerts").result_rows == [(2,)]


def test_budget_control_alerts_on_the_controls_the_gateways_apply(client):
    """budget_control reads the latest control of each budget still set: warning past the warning
    threshold, critical when throttled or blocked; the control's reason is the summary."""
    from yieldmeter.alerts.registry import RULES

    start, end = datetime(2025, 3, 1, tzinfo=timezone.utc), datetime(2025, 4, 1, tzinfo=timezone.utc)

    def control(budget_id, state, spent, offset, **scope):
        return {"budget_id": budget_id, "org_id": "acme", "period": "month", "time_zone": "UTC",
                "period_start": start.isoformat(), "period_end": end.isoformat(), "state": state, "action": "block",
                "limit_usd": "100", "spent_usd": spent, "remaining_usd": str(100 - Decimal(spent)),
                "warn_at_pct": "80", "calls": 10, "unpriced_calls": 2, "reason": f"{budget_id} is {state}",
                "updated_at": NOW.isoformat(), "schema_version": 1, "_topic": "c", "_partition": 0,
                "_offset": offset, "_timestamp": 0, **scope}

    rows = [
        control("spend/acme/team=support/month", "warn", "85", 1, team="support"),
        control("spend/acme/team=support/month", "block", "100.000000000000000000001", 2, team="support"),
        control("spend/acme/team=sales/month", "warn", "81", 3, team="sales"),
        control("spend/acme/team=ops/month", "ok", "10", 4, team="ops"),
        control("spend/acme/team=gone/month", "block", "500", 5, team="gone"),  # its budget was deleted
    ]
    client.raw_insert("controls", insert_block="\n".join(json.dumps(r) for r in rows).encode(), fmt="JSONEachRow",
                      settings={"date_time_input_format": "best_effort"})
    budgets = [{"budget_id": r["budget_id"], "kind": "spend", "org_id": "acme", "team": r["team"], "period": "month",
                "time_zone": "UTC", "limit_usd": "100", "warn_at_pct": "80", "action": "block", "_topic": "b",
                "_partition": 0, "_offset": i, "_timestamp": 0} for i, r in enumerate(rows)]
    budgets.append(budgets[-1] | {"is_deleted": 1, "_offset": 99})
    client.raw_insert("budgets", insert_block="\n".join(json.dumps(b) for b in budgets).encode(), fmt="JSONEachRow")

    assert "budget_control" in RULES
    found = run(client, "budget_control")
    assert set(found) == {"budget_control/org=acme/team=support/period=month",
                          "budget_control/org=acme/team=sales/period=month"}
    blocked = found["budget_control/org=acme/team=support/period=month"]
    assert blocked.severity == Severity.CRITICAL and blocked.value == Decimal("100.000000000000000000001")
    assert blocked.summary == "spend/acme/team=support/month is block"
    assert blocked.details["Calls"] == "10, 2 without a price (not in the spend)"
    warned = found["budget_control/org=acme/team=sales/period=month"]
    assert warned.severity == Severity.WARNING and warned.threshold == Decimal(80)
    only_blocks = build_config({"rules": {"budget_control": {"states": ["block"]}}}, "t")
    assert set(run(client, "budget_control", only_blocks)) == {"budget_control/org=acme/team=support/period=month"}
    assert run(client, "budget_control", now=end) == {}  # the period is over
