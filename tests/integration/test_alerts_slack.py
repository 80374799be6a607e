"""Alert delivery over real HTTP to a local webhook receiver, with the incident log in the
real ClickHouse engine (chdb). Findings come from a scripted rule so each test controls
exactly when an incident is present; tests/integration/test_alerts_rules.py drives real rules.
"""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from pydantic import SecretStr
from rich.console import Console

from tests.conftest import free_port
from tests.integration.alerts_support import NOW, Receiver
from yieldmeter.alerts.config import build_config
from yieldmeter.alerts.engine import cycle
from yieldmeter.alerts.model import Finding, Severity
from yieldmeter.alerts.rules import RuleSpec, SpendSpikeParams
from tests.block_kit import payload_problems

pytestmark = pytest.mark.integration

FAST = {"timeout_seconds": 2, "max_retries": 3, "backoff_seconds": 0.01, "max_retry_after_seconds": 5,
        "retry_base_seconds": 60, "retry_max_seconds": 600}


class Script:
    """A rule whose findings the test sets: `script.present = {"support"}` -> one finding per team."""

    def __init__(self):
        self.present: dict[str, str] = {}  # team -> cost

    def _evaluate(self, client, config, now):
        return [
            Finding(
                rule="spend_spike", entity={"org": "acme", "team": team}, severity=Severity.WARNING,
                title=f"Spend spike: acme / {team}", value=Decimal(cost), baseline=Decimal("10"),
                threshold=Decimal("15"), unit="USD/hour", observed_at=now.replace(minute=0) - timedelta(hours=1),
                query=f"SELECT hour, sum(cost_usd) FROM calls_hourly WHERE team = '{team}' GROUP BY hour",
                summary=f"*${cost}* against *$10.00*",
            )
            for team, cost in self.present.items()
        ]

    @property
    def rules(self) -> list[RuleSpec]:
        return [RuleSpec("spend_spike", self._evaluate, SpendSpikeParams, (), "scripted")]


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def factory(start: bool = True, script=None) -> Receiver:
        r = Receiver(free_port(), list(script or []))
        made.append(r.start() if start else r)
        return r

    yield factory
    for r in made:
        r.stop()


def config_for(url: str | None, **extra):
    return build_config({"delivery": FAST} | extra, "test", SecretStr(url) if url else None)


def deliveries(client) -> list[tuple]:
    return client.query(
        "SELECT incident_key, attempt, route, status, http_status, retries, error FROM alert_deliveries "
        "ORDER BY attempted_at, attempt"
    ).result_rows


def events(client) -> list[tuple]:
    return client.query("SELECT incident_key, event FROM alerts ORDER BY evaluated_at, created_at").result_rows


def assert_block_kit(receiver: Receiver) -> None:
    for message in receiver.received:
        assert payload_problems(message.body) == []


def test_one_message_per_incident(client, receiver):
    slack, script = receiver(), Script()
    config = config_for(slack.url)
    script.present = {"support": "50"}
    first = cycle(client, config, NOW, rules=script.rules)
    assert (first.delivered, first.failed) == (1, [])
    second = cycle(client, config, NOW + timedelta(minutes=10), rules=script.rules)  # same finding, within cooldown
    assert (len(second.notices), second.delivered) == (0, 0)
    assert len(slack.received) == 1
    assert_block_kit(slack)
    body = slack.received[0].body
    assert body["blocks"][0]["text"]["text"] == ":warning: Spend spike: acme / support"
    assert events(client) == [("spend_spike/org=acme/team=support", "opened")]
    assert deliveries(client) == [("spend_spike/org=acme/team=support", 1, "default", "delivered", 200, 0, "")]


def test_429_then_success_waits_for_retry_after(client, receiver):
    slack, script = receiver(script=[(429, "rate_limited", {"Retry-After": "1"})]), Script()
    script.present = {"support": "50"}
    report = cycle(client, config_for(slack.url), NOW, rules=script.rules)
    assert report.delivered == 1
    assert len(slack.received) == 2
    assert slack.received[1].at - slack.received[0].at >= 1.0  # Retry-After honoured (a lower bound, not a timing)
    assert deliveries(client) == [("spend_spike/org=acme/team=support", 1, "default", "delivered", 200, 1, "")]
    assert_block_kit(slack)


def test_500_is_retried_within_the_attempt(client, receiver):
    slack, script = receiver(script=[(500, "internal_error", {}), (503, "unavailable", {})]), Script()
    script.present = {"support": "50"}
    assert cycle(client, config_for(slack.url), NOW, rules=script.rules).delivered == 1
    assert len(slack.received) == 3
    assert deliveries(client)[0][3:6] == ("delivered", 200, 2)


def test_failures_beyond_the_retries_are_kept_and_delivered_later(client, receiver):
    slack, script = receiver(script=[(500, "internal_error", {})] * 4), Script()  # 1 try + 3 retries
    config = config_for(slack.url)
    script.present = {"support": "50"}
    report = cycle(client, config, NOW, rules=script.rules)
    assert report.delivered == 0 and "HTTP 500: internal_error" in report.failed[0]
    assert cycle(client, config, NOW + timedelta(minutes=2), rules=script.rules).delivered == 1
    assert len(slack.received) == 5
    assert [row[1:5] for row in deliveries(client)] == [(1, "default", "failed", 500), (2, "default", "delivered", 200)]


def test_receiver_down_then_up_delivers_late_exactly_once(client, receiver):
    slack, script = receiver(start=False), Script()  # nothing listens on its port yet
    config = config_for(slack.url)
    script.present = {"support": "50"}
    down = cycle(client, config, NOW, rules=script.rules)
    assert down.delivered == 0 and len(down.failed) == 1
    [(key, attempt, route, status, http_status, retries, error)] = deliveries(client)
    assert (attempt, status, http_status, retries) == (1, "failed", 0, 3)
    assert "Connection refused" in error and "secret-token" not in error
    early = cycle(client, config, NOW + timedelta(seconds=30), rules=script.rules)  # before its next retry time
    assert (early.delivered, early.failed) == (0, [])
    slack.start()
    late = cycle(client, config, NOW + timedelta(minutes=2), rules=script.rules)
    assert late.delivered == 1
    after = cycle(client, config, NOW + timedelta(minutes=4), rules=script.rules)
    assert (after.delivered, after.failed, len(after.notices)) == (0, [], 0)
    assert len(slack.received) == 1  # one message for the incident, late
    assert_block_kit(slack)
    # the webhook URL is a secret: nothing stored carries it
    leaked = client.query(
        "SELECT count() FROM (SELECT toString(tuple(*)) AS r FROM alerts UNION ALL "
        "SELECT toString(tuple(*)) FROM alert_deliveries) WHERE position(r, 'secret-token') > 0"
    ).result_rows[0][0]
    assert leaked == 0


def test_an_outage_across_open_and_resolve_delivers_both_in_order(client, receiver):
    slack, script = receiver(start=False), Script()
    config = config_for(slack.url)
    script.present = {"support": "50"}
    cycle(client, config, NOW, rules=script.rules)
    script.present = {}
    cleared = cycle(client, config, NOW + timedelta(hours=1, minutes=2), rules=script.rules)
    assert [n.event.value for n in cleared.notices] == ["resolved"]
    assert cleared.waiting == 1  # the resolved notice waits behind the failing route, still pending
    slack.start()
    assert cycle(client, config, NOW + timedelta(hours=2), rules=script.rules).delivered == 2
    headers = [m.body["blocks"][0]["text"]["text"] for m in slack.received]
    assert headers == [":warning: Spend spike: acme / support", ":white_check_mark: Resolved: Spend spike: acme / support"]


def test_resolved_notice_when_the_finding_clears(client, receiver):
    slack, script = receiver(), Script()
    config = config_for(slack.url)
    script.present = {"support": "50"}
    cycle(client, config, NOW, rules=script.rules)
    script.present = {}
    assert [n.event.value for n in cycle(client, config, NOW + timedelta(hours=1), rules=script.rules).notices] == ["resolved"]
    assert cycle(client, config, NOW + timedelta(hours=2), rules=script.rules).notices == []
    assert [m.body["blocks"][0]["text"]["text"].split(" ", 1)[1] for m in slack.received] == [
        "Spend spike: acme / support", "Resolved: Spend spike: acme / support"]
    assert "open for 1h 00m" in slack.received[1].body["blocks"][1]["text"]["text"]
    assert_block_kit(slack)
    script.present = {"support": "50"}  # it comes back: a new incident under the same key
    assert [n.event.value for n in cycle(client, config, NOW + timedelta(hours=3), rules=script.rules).notices] == ["opened"]
    ids = client.query("SELECT uniqExact(incident_id), uniqExact(incident_key) FROM alerts").result_rows[0]
    assert ids == (2, 1)


def test_worsened_and_repeated_notices(client, receiver):
    slack, script = receiver(), Script()
    config = config_for(slack.url, defaults={"cooldown_minutes": 120, "worsen_factor": 2})
    script.present = {"support": "50"}
    cycle(client, config, NOW, rules=script.rules)
    script.present = {"support": "90"}  # worse, but not twice as bad
    assert cycle(client, config, NOW + timedelta(minutes=30), rules=script.rules).notices == []
    script.present = {"support": "100"}
    assert [n.event.value for n in cycle(client, config, NOW + timedelta(minutes=60), rules=script.rules).notices] == ["worsened"]
    assert cycle(client, config, NOW + timedelta(minutes=150), rules=script.rules).notices == []  # cooldown from the last notice
    assert [n.event.value for n in cycle(client, config, NOW + timedelta(minutes=180), rules=script.rules).notices] == ["repeated"]
    assert [m.body["blocks"][0]["text"]["text"] for m in slack.received] == [
        ":warning: Spend spike: acme / support", ":warning: Worse: Spend spike: acme / support",
        ":warning: Still firing: Spend spike: acme / support"]


def test_teams_are_routed_to_their_own_webhooks(client, receiver, monkeypatch):
    support, sales, script = receiver(), receiver(), Script()
    monkeypatch.setenv("YM_TEST_WEBHOOK_SUPPORT", support.url)
    config = config_for(
        None,
        routes={"support-alerts": {"webhook_url_env": "YM_TEST_WEBHOOK_SUPPORT"},
                "sales-alerts": {"webhook_url_env": "YM_TEST_WEBHOOK_SALES"}},
        routing=[{"org": "acme", "team": "support", "route": "support-alerts"},
                 {"org": "acme", "team": "sales", "route": "sales-alerts"}],
    )
    script.present = {"support": "50", "sales": "70"}
    first = cycle(client, config, NOW, rules=script.rules)
    # sales' variable is not set yet: its notice fails and is kept, support's is delivered
    assert first.delivered == 1 and "YM_TEST_WEBHOOK_SALES is not set" in first.failed[0]
    monkeypatch.setenv("YM_TEST_WEBHOOK_SALES", sales.url)
    assert cycle(client, config, NOW + timedelta(minutes=2), rules=script.rules).delivered == 1
    assert [m.body["blocks"][0]["text"]["text"] for m in support.received] == [":warning: Spend spike: acme / support"]
    assert [m.body["blocks"][0]["text"]["text"] for m in sales.received] == [":warning: Spend spike: acme / sales"]
    routes = client.query("SELECT DISTINCT route FROM alert_deliveries ORDER BY route").result_rows
    assert routes == [("sales-alerts",), ("support-alerts",)]


def test_without_a_webhook_alerts_are_stored_and_printed(client):
    script, out = Script(), io.StringIO()
    console = Console(file=out, width=200)
    script.present = {"support": "50"}
    report = cycle(client, config_for(None), NOW, console=console, rules=script.rules)
    assert (report.printed, report.delivered, report.failed) == (1, 0, [])
    assert "Spend spike: acme / support" in out.getvalue() and "$50.00/hour" in out.getvalue()
    assert cycle(client, config_for(None), NOW + timedelta(hours=1), console=console, rules=script.rules).printed == 0
    assert [row[3] for row in deliveries(client)] == ["printed"]
