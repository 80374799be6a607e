"""The Budget and Control contracts: validation that names the field, keys, periods, schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import jsonschema
import pytest

from yieldmeter.budgets import (
    SCHEMA_FILES,
    Budget,
    BudgetError,
    Control,
    load_budget_file,
    parse_budget,
    period_bounds,
)
from tests.conftest import PROJECT_ROOT
from yieldmeter.contracts import ContractError, explain, schema_text, to_json_bytes

pytestmark = pytest.mark.unit


def problems(data: dict) -> list[str]:
    with pytest.raises(ContractError) as error:
        parse_budget(data)
    return explain(error.value).splitlines()


def test_defaults_and_wire_form():
    budget = parse_budget({"org_id": "acme", "team": "support", "limit_usd": "250.5"})
    assert (budget.kind, budget.period, budget.time_zone, budget.action, budget.warn_at_pct) == (
        "spend", "month", "UTC", "notify", Decimal(80))
    wire = json.loads(to_json_bytes(budget))
    assert wire["limit_usd"] == "250.5" and wire["warn_at_pct"] == "80"  # money and percent as strings
    assert parse_budget(to_json_bytes(budget)) == budget
    assert parse_budget({"org_id": "a", "limit_usd": 1, "action": "throttle"}).throttle_per_minute == 6


@pytest.mark.parametrize(("data", "expected"), [
    ({"org_id": "acme"}, "limit_usd: required field is missing"),
    ({"org_id": "acme", "limit_usd": "0"}, "limit_usd: Input should be greater than 0 (got '0')"),
    ({"org_id": "acme", "limit_usd": 1.5}, None),  # a JSON number is read exactly
    ({"org_id": "acme", "limit_usd": "1", "period": "week"}, "period: Input should be 'day' or 'month' (got 'week')"),
    ({"org_id": "acme", "limit_usd": "1", "time_zone": "CET+1"}, "time_zone: must be an IANA time zone"),
    ({"org_id": "acme", "limit_usd": "1", "action": "notify", "throttle_per_minute": 3},
     "throttle_per_minute: only a budget with action throttle has a throttle_per_minute (got 3)"),
    ({"org_id": "acme", "limit_usd": "1", "warn_at_pct": "100.00001"}, "warn_at_pct: "),
    ({"org_id": " ", "limit_usd": "1"}, "org_id: String should match pattern"),
    ({"org_id": "acme", "limit_usd": "1", "colour": "red"}, "colour: unknown field"),
    ({"org_id": "acme", "limit_usd": "1", "outcome_type": "pr_merged"},
     "outcome_type: only a cost_per_outcome budget has an outcome_type (got 'pr_merged')"),
    ({"org_id": "acme", "kind": "cost_per_outcome", "limit_usd": "1", "app": "bot", "outcome_type": "pr_merged",
      "action": "block"}, "action: a cost_per_outcome budget can only notify"),
    ({"org_id": "acme", "kind": "cost_per_outcome", "limit_usd": "1", "outcome_type": "pr_merged"},
     "app: a cost_per_outcome budget needs one"),
])
def test_each_problem_names_its_field(data, expected):
    if expected is None:
        assert parse_budget(data).limit_usd == Decimal("1.5")
        return
    assert any(line.startswith(expected) for line in problems(data)), problems(data)


def test_budget_id_is_kind_scope_and_period_with_values_escaped():
    budget = Budget(org_id="acme", team="r&d/eu", app="bot=1", period="day", limit_usd=Decimal(1))
    assert budget.scope == "acme/team=r%26d%2Feu/app=bot%3D1"
    assert budget.budget_id == "spend/acme/team=r%26d%2Feu/app=bot%3D1/day"
    outcome = Budget(org_id="acme", kind="cost_per_outcome", app="bot", outcome_type="ticket_resolved",
                     limit_usd=Decimal("0.05"))
    assert outcome.budget_id == "cost_per_outcome/acme/app=bot/ticket_resolved/month"


@pytest.mark.parametrize(("at", "zone", "period", "start", "end"), [
    ("2026-11-22T13:00:00Z", "UTC", "day", "2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z"),
    ("2026-11-22T23:30:00Z", "Asia/Tokyo", "day", "2026-11-22T15:00:00Z", "2026-11-23T15:00:00Z"),
    ("2026-12-31T18:14:59Z", "Asia/Kathmandu", "month", "2026-11-30T18:15:00Z", "2026-12-31T18:15:00Z"),
    ("2026-03-29T12:00:00Z", "Europe/Paris", "day", "2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z"),  # 23 h
    ("2026-11-01T12:00:00Z", "America/New_York", "day", "2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z"),  # 25 h
    ("2026-12-15T00:00:00Z", "America/New_York", "month", "2026-12-01T05:00:00Z", "2027-01-01T05:00:00Z"),
])
def test_periods_start_at_local_midnight(at, zone, period, start, end):
    parse = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
    assert period_bounds(parse(at), zone, period) == (parse(start), parse(end))


def test_a_control_expires_at_its_period_end_and_matches_its_scope():
    now = datetime(2026, 11, 22, tzinfo=UTC)
    control = Control(budget_id="spend/acme/team=support/month", org_id="acme", team="support", period="month",
                      time_zone="UTC", period_start=now - timedelta(days=21), period_end=now + timedelta(days=8),
                      state="block", action="block", limit_usd=Decimal(1), spent_usd=Decimal("1.2"),
                      remaining_usd=Decimal("-0.2"), warn_at_pct=Decimal(80), calls=3, unpriced_calls=0,
                      reason="...", updated_at=now)
    assert control.in_force(now) and not control.in_force(now + timedelta(days=8))
    assert control.matches("acme", "support", "u1", "bot", None)
    assert not control.matches("acme", "sales", "u1", "bot", None) and not control.matches("globex", "support", "u", "a", None)


def test_a_budget_file_is_all_or_nothing_and_numbers_stay_exact(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("budgets:\n  - {org_id: acme, limit_usd: 0.1}\n  - {org_id: acme, team: t, limit_usd: 12.345678901}\n")
    assert [b.limit_usd for b in load_budget_file(good)] == [Decimal("0.1"), Decimal("12.345678901")]
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {org_id: acme, limit_usd: 1}\n- {org_id: acme, limit_usd: 2}\n- [not, a, mapping]\n")
    with pytest.raises(BudgetError) as error:
        load_budget_file(bad)
    assert "bad.yaml[2]: a budget is a mapping" in str(error.value)
    assert "budget spend/acme/month appears twice" in str(error.value)


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_committed_schemas_match_the_models(name):
    assert (PROJECT_ROOT / "schemas" / name).read_text() == schema_text(SCHEMA_FILES[name]), (
        "schemas/ are stale: run `python -m yieldmeter.budgets` and commit the result")


def test_the_budget_schema_accepts_what_the_model_writes():
    schema = json.loads((PROJECT_ROOT / "schemas" / "budget.schema.json").read_text())
    budget = Budget(org_id="acme", team="t", limit_usd=Decimal("12.5"), action="throttle", time_zone="Europe/Paris")
    jsonschema.Draft202012Validator(schema).validate(json.loads(to_json_bytes(budget)))
