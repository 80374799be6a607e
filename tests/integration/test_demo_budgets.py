"""The monthly org and team budgets of infra/budgets.example.yaml (which the demo publishes) are sized to the workload `yieldmeter demo` simulates:
the month each scope is on course to spend, priced by the reference (prices.price_for and
PriceRecord.cost_usd over the seeded catalog), sits between 30 % and 80 % of its budget, so the
demo's budget alerts stay quiet, except the one team planted over it (globex's support-emea,
which runs the dearest model on support tickets: the model-overkill story)."""

from __future__ import annotations

import inspect
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from yieldmeter.budgets import load_budget_file
from yieldmeter.cli.demo import EXAMPLE_BUDGETS, demo
from yieldmeter.contracts import parse_usage
from yieldmeter.normalize import normalize_model
from yieldmeter.prices import build_catalog, price_for
from yieldmeter.simulate import FileSink, SimulationOptions, simulate

pytestmark = pytest.mark.integration

SAMPLE = 100_000  # events simulated here; spend grows with the event count, so it is scaled to the demo's
OVER = {("globex", "support-emea")}


def test_demo_budgets_fit_the_demo_workload(tmp_path):
    demo_events = inspect.signature(demo).parameters["events"].default.default
    demo_days = inspect.signature(demo).parameters["days"].default.default
    simulate(SimulationOptions(events=SAMPLE, days=demo_days, seed=42, start=datetime(2026, 11, 2, tzinfo=UTC)),
             FileSink(tmp_path))
    prices = defaultdict(list)
    for p in build_catalog().prices.values():
        prices[p.provider, p.model].append(p)
    spend: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for line in (tmp_path / "usage.jsonl").open("rb"):
        try:
            event = parse_usage(line)
        except ValueError:
            continue  # the planted malformed lines
        model = normalize_model(event.provider, event.response_model or event.request_model)
        price = price_for(prices[event.provider, model], event.provider, model, event.service_tier, event.occurred_at)
        if price is not None:
            cost = price.cost_usd(event)
            spend[event.org_id, "*"] += cost
            spend[event.org_id, event.team] += cost
    month = Decimal(demo_events) / SAMPLE * Decimal(30) / demo_days  # the demo's spend, over a month
    budgets = {(b.org_id, b.team or "*"): b.limit_usd for b in load_budget_file(EXAMPLE_BUDGETS)
               if b.kind == "spend" and b.period == "month" and b.user_id is None and b.app is None and b.api_key is None}
    assert len(budgets) >= 7, budgets
    shares = {scope: spend[scope] * month / budget for scope, budget in budgets.items()}
    assert {scope for scope, share in shares.items() if share > 1} == OVER, shares
    assert all(Decimal("0.3") <= share <= Decimal("0.8") for scope, share in shares.items() if scope not in OVER), shares
