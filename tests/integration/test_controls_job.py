"""The controls job (jobs/controls.py) on a real broker and a real Flink mini-cluster: budgets set
from the CLI reach usage.controls with each scope's exact spend in its current period, unpriced
calls named in the reason, periods cut at the budget's local midnights, deletions withdrawn. (A
SIGKILL of the whole pipeline, controls included: tests/integration/test_pipeline_faults.py.)

The job reads priced calls as the price job writes them; here they are produced directly, so
each test controls exactly what the job sees (the LiteLLM tests run the whole pipeline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from tests.conftest import DEV_LIB
from yieldmeter.budgets import Budget, period_bounds, read_budgets, read_compacted, read_controls
from yieldmeter.cli import app
from yieldmeter.flink import start_job
from yieldmeter.topics import topic_layout

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Call:
    """A priced call as the price job writes it (the fields the controls job reads)."""

    event_id: str
    occurred_at: datetime
    team: str
    cost_usd: Decimal | None  # None: unpriced
    user_id: str = "u1"
    app: str = "bot"
    api_key: str | None = None
    org_id: str = "acme"

    def record(self) -> bytes:
        return json.dumps({
            "schema_version": 1, "event_id": self.event_id,
            "occurred_at": self.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "org_id": self.org_id, "team": self.team, "user_id": self.user_id, "app": self.app,
            "provider": "openai", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100,
            "attributes": {"api_key": self.api_key} if self.api_key else {},
            "pricing_status": "priced" if self.cost_usd is not None else "unpriced",
            "cost_usd": f"{self.cost_usd:.21f}" if self.cost_usd is not None else None,
        }).encode()  # fmt: skip


def produce(bootstrap: str, topic: str, calls: list[Call]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for call in calls:
        producer.produce(topic, call.record(), key=call.event_id.encode())
    assert producer.flush(30) == 0


@pytest.fixture
def topics(settings, new_topics):
    """Fresh priced (2 partitions), budgets and controls topics (compacted, as in production)."""
    (priced,) = new_topics(partitions=2)
    (budgets,) = new_topics(config=topic_layout()["budgets"]["config"])
    (controls,) = new_topics(config=topic_layout()["controls"]["config"])
    return settings.model_copy(update={"topic_priced": priced, "topic_budgets": budgets, "topic_controls": controls})


def cli_env(config) -> dict[str, str]:
    return {"YIELDMETER_KAFKA_BOOTSTRAP": config.bootstrap_servers, "YIELDMETER_STATE_DIR": str(config.state_path),
            "YIELDMETER_LIB_DIR": str(DEV_LIB), "YIELDMETER_TOPIC_BUDGETS": config.topic_budgets,
            "YIELDMETER_TOPIC_CONTROLS": config.topic_controls}


def cli(config, *args: str):
    return CliRunner().invoke(app, list(args), env=cli_env(config))


def cli_error(config, *args: str) -> str:
    """Run the command as users do (its own process); it must fail with a message, no traceback."""
    env = {"PATH": os.environ["PATH"], "HOME": str(config.state_path)} | cli_env(config)
    result = subprocess.run([sys.executable, "-m", "yieldmeter", *args], capture_output=True, text=True, env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stdout + result.stderr
    return result.stdout + result.stderr


def run_controls(config, **options) -> None:
    start_job("controls", config, group_id=f"g-{config.topic_controls}", priced_topic=config.topic_priced,
              budgets_topic=config.topic_budgets, controls_topic=config.topic_controls, **options).wait(300)


def in_scope(budget: Budget, call: Call) -> bool:
    return call.org_id == budget.org_id and all(
        getattr(budget, field) is None or getattr(budget, field) == getattr(call, field)
        for field in ("team", "user_id", "app", "api_key"))


def expected(budget: Budget, calls: list[Call]) -> dict:
    """The control the spec asks for: the period of the budget's latest call (or of now), the
    exact spend of its calls in that period, and the state the limit and warning give."""
    mine = [c for c in calls if in_scope(budget, c)]
    latest = max((c.occurred_at for c in mine), default=datetime.now(UTC))
    start, end = period_bounds(latest, budget.time_zone, budget.period)
    counted = [c for c in mine if start <= c.occurred_at < end]
    spent = sum((c.cost_usd for c in counted if c.cost_usd is not None), Decimal(0))
    if spent >= budget.limit_usd:
        state = {"block": "block", "throttle": "throttle", "notify": "warn"}[budget.action]
    else:
        state = "warn" if spent * 100 >= budget.limit_usd * budget.warn_at_pct else "ok"
    return {"period_start": start, "period_end": end, "spent_usd": spent, "state": state,
            "remaining_usd": budget.limit_usd - spent, "calls": len(counted),
            "unpriced_calls": sum(1 for c in counted if c.cost_usd is None)}


def observed(control) -> dict:
    return {name: getattr(control, name) for name in
            ("period_start", "period_end", "spent_usd", "state", "remaining_usd", "calls", "unpriced_calls")}


BUDGETS_FILE = """
budgets:
  - {org_id: acme, team: support, limit_usd: 1.00, action: block}
  - {org_id: acme, team: sales, limit_usd: 0.70, warn_at_pct: 50, action: throttle, throttle_per_minute: 3}
  - {org_id: acme, app: bot, api_key: key-7, limit_usd: 0.25, action: notify}
  - {org_id: acme, user_id: u9, period: day, time_zone: America/New_York, limit_usd: 10}
  - {org_id: acme, limit_usd: 100, action: block}
  - {org_id: globex, limit_usd: 5}
  - {org_id: acme, team: support, app: bot, kind: cost_per_outcome, outcome_type: ticket_resolved, limit_usd: 0.05}
"""


def test_budgets_set_from_the_cli_reach_the_controls_topic_with_exact_spend(topics, tmp_path):
    cost = Decimal("0.123456789012345678901")
    calls = (
        [Call(f"s{i}", NOW - timedelta(minutes=i), "support", cost) for i in range(9)]  # 1.111... > 1.00
        + [Call("s-unpriced", NOW - timedelta(minutes=3), "support", None)]
        + [Call(f"x{i}", NOW - timedelta(minutes=i), "sales", Decimal("0.1"), api_key="key-7") for i in range(4)]
        + [Call(f"n{i}", NOW - timedelta(hours=i), "eng", Decimal("2.5"), user_id="u9") for i in range(3)]
        # last period's spend does not count in this one (unless that is where the latest call is)
        + [Call("old", NOW - timedelta(days=40), "support", Decimal("50"))]
    )
    produce(topics.bootstrap_servers, topics.topic_priced, calls)
    (tmp_path / "budgets.yaml").write_text(BUDGETS_FILE)
    result = cli(topics, "budgets", "set", "--file", str(tmp_path / "budgets.yaml"))
    assert result.exit_code == 0, result.output
    assert "set spend/acme/team=support/month: $1.00 for team support of acme, per month" in result.output
    budgets, problems = read_budgets(topics)
    assert len(budgets) == 7 and problems == []

    run_controls(topics)

    controls = read_controls(topics)
    spend_budgets = {key: b for key, b in budgets.items() if b.kind == "spend"}
    assert set(controls) == set(spend_budgets)  # cost_per_outcome budgets are the marts' to judge
    for key, budget in spend_budgets.items():
        assert observed(controls[key]) == expected(budget, calls), key
        assert controls[key].limit_usd == budget.limit_usd and controls[key].action == budget.action
    support = controls["spend/acme/team=support/month"]
    assert support.state == "block" and support.unpriced_calls == 1
    assert support.reason == (
        f"team support of acme spent ${support.spent_usd:.2f} of its $1.00 monthly budget: calls are refused until "
        f"{support.period_end:%Y-%m-%dT%H:%M:%S}Z; 1 call(s) without a known price are not in the spend")
    assert controls["spend/acme/team=sales/month"].throttle_per_minute == 3
    assert "(over the limit; the budget only notifies)" in controls["spend/acme/app=bot/api_key=key-7/month"].reason
    assert controls["spend/globex/month"].calls == 0 and controls["spend/globex/month"].state == "ok"
    # on the wire: exact decimal strings with every digit the job computed
    raw = json.loads(read_compacted(topics, "controls")["spend/acme/team=support/month"])
    assert Decimal(raw["spent_usd"]) == 9 * cost and raw["spent_usd"].count(".") == 1 and "E" not in raw["spent_usd"]

    # Raise one limit, delete another: the next run applies both (it recounts from the topic).
    assert cli(topics, "budgets", "set", "--org-id", "acme", "--team", "support", "--limit-usd", "5",
               "--action", "block").exit_code == 0
    deleted = cli(topics, "budgets", "delete", "spend/globex/month")
    assert deleted.exit_code == 0, deleted.output
    assert "spend/globex/month" not in read_controls(topics)  # withdrawn at once, before any job runs
    run_controls(topics)
    controls = read_controls(topics)
    assert "spend/globex/month" not in controls
    assert controls["spend/acme/team=support/month"].state == "ok"
    assert controls["spend/acme/team=support/month"].spent_usd == 9 * cost  # the same calls, counted once

    listed = cli(topics, "budgets", "list", "--org-id", "acme")
    assert listed.exit_code == 0, listed.output
    assert "spend/acme/team=sales/month" in listed.output and "throttle" in listed.output


def test_a_bad_budget_names_the_field_and_publishes_nothing(topics, tmp_path):
    output = cli_error(topics, "budgets", "set", "--org-id", "acme", "--limit-usd", "ten", "--time-zone", "Europe/Pariss")
    assert "time_zone (--time-zone): must be an IANA time zone such as UTC, Europe/Paris or America/New_York " \
           "(got 'Europe/Pariss')" in output
    assert "limit_usd (--limit-usd): Input should be a valid decimal (got 'ten')" in output
    (tmp_path / "b.yaml").write_text("- {org_id: acme, limit_usd: 5}\n- {org_id: acme, team: t, limit_usd: 5, colour: red}\n")
    output = cli_error(topics, "budgets", "set", "--file", str(tmp_path / "b.yaml"))
    assert "b.yaml[1].colour: unknown field" in output and "nothing was published" in output
    output = cli_error(topics, "budgets", "delete", "spend/acme/month")
    assert "no budget spend/acme/month on " in output
    assert read_budgets(topics) == ({}, [])


# Budgets in several time zones, each on its own team, with calls on both sides of local
# midnights (and across a DST change): the current period is the latest call's, cut where the
# zone's clocks read midnight.
ZONES = [
    ("Asia/Kathmandu", "day", datetime(2026, 11, 20, 18, 14, tzinfo=UTC), datetime(2026, 11, 20, 18, 15, tzinfo=UTC)),
    ("America/New_York", "day", datetime(2026, 11, 1, 3, 59, tzinfo=UTC), datetime(2026, 11, 1, 4, 0, tzinfo=UTC)),
    ("Europe/Paris", "day", datetime(2026, 3, 28, 22, 59, tzinfo=UTC), datetime(2026, 3, 29, 21, 59, tzinfo=UTC)),
    ("Australia/Lord_Howe", "month", datetime(2026, 9, 30, 13, 29, tzinfo=UTC), datetime(2026, 9, 30, 13, 30, tzinfo=UTC)),
    ("UTC", "month", datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)),
]


def test_periods_roll_over_at_the_budgets_local_midnight(topics):
    calls, budgets = [], []
    for index, (zone, period, before, after) in enumerate(ZONES):
        team = f"tz{index}"
        budgets.append(Budget(org_id="acme", team=team, period=period, time_zone=zone, limit_usd=Decimal(1)))
        calls += [Call(f"{team}-a", before, team, Decimal("0.3")), Call(f"{team}-b", after, team, Decimal("0.2"))]
        # the boundary lies between the two calls: the earlier one is last period's
        assert period_bounds(before, zone, period) != period_bounds(after, zone, period)
    produce(topics.bootstrap_servers, topics.topic_priced, calls)
    for budget in budgets:
        result = cli(topics, "budgets", "set", "--org-id", "acme", "--team", budget.team, "--period", budget.period,
                     "--time-zone", budget.time_zone, "--limit-usd", "1")
        assert result.exit_code == 0, result.output

    run_controls(topics)

    controls = read_controls(topics)
    for budget in budgets:
        control = controls[budget.budget_id]
        assert observed(control) == expected(budget, calls), budget.time_zone
        assert control.spent_usd == Decimal("0.2")  # only the call after the local midnight
    paris = controls["spend/acme/team=tz2/day"]
    assert paris.period_end - paris.period_start == timedelta(hours=23)  # the day summer time starts
